// The automerge-repo side of Phakhi's fleet benchmark: N clients (automerge-repo Repos with the
// WebSocket client adapter) against one sync server, CONCURRENCY connected at once. Each client
// creates one document, adds RECORDS records one change each (Thai text, a counter), and waits
// until the server's sync state lists every head of the document ("remote-heads" with the
// server's storage id). It then prints `doc <documentId> <heads,comma-separated>` and closes.
// The runner decides when the server has made the document durable by reading the server's
// DATA_DIR. Lines: `start`, `doc ...` per client, `done`, or `error <message>`.
//
//   node drive.mjs --url ws://127.0.0.1:3030 --clients 1000 --records 10 --concurrency 32

import { Repo } from "@automerge/automerge-repo"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import * as A from "@automerge/automerge"

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]])
    return pairs
  }, []),
)
const url = args.url
const clients = Number(args.clients ?? 1000)
const records = Number(args.records ?? 10)
const concurrency = Number(args.concurrency ?? 32)
const CLIENT_TIMEOUT_MS = 120_000
const DISTRICTS = ["เมืองมหาสารคาม", "กันทรวิชัย", "บรบือ", "วาปีปทุม", "โกสุมพิสัย", "เชียงยืน"]

if (!url) {
  console.log("error --url is required")
  process.exit(2)
}

function sameHeads(a, b) {
  if (!a || !b || a.length !== b.length) return false
  const set = new Set(a)
  return b.every(h => set.has(h))
}

async function client(i) {
  const adapter = new BrowserWebSocketClientAdapter(url)
  const repo = new Repo({ network: [adapter], peerId: `bench-client-${i}` })
  const handle = repo.create()
  handle.change(d => {
    d.activities = {}
  })
  for (let r = 0; r < records; r++) {
    const n = i * 100 + r
    handle.change(d => {
      d.activities[`act-${String(n).padStart(6, "0")}`] = {
        kind: n % 3 === 0 ? "campaign" : "training",
        title: `อบรมต่อต้านการทุจริตสำหรับเยาวชน ครั้งที่ ${n}`,
        description: "ณ โรงเรียนบ้านหนองแวง ให้ความรู้เรื่องงบประมาณท้องถิ่น",
        date: `2026-${String(1 + (r % 12)).padStart(2, "0")}-${String(1 + (i % 28)).padStart(2, "0")}`,
        district: DISTRICTS[n % DISTRICTS.length],
        attendance: new A.Counter(20 + (n % 50)),
        organiser: `leader-${i}`,
      }
    })
  }
  const heads = handle.heads()
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client ${i}: server never acknowledged`)), CLIENT_TIMEOUT_MS)
    const check = ({ heads: remote }) => {
      if (sameHeads(remote, heads)) {
        clearTimeout(timer)
        handle.off("remote-heads", check)
        resolve()
      }
    }
    handle.on("remote-heads", check)
  })
  console.log(`doc ${handle.documentId} ${heads.join(",")}`)
  adapter.disconnect()
}

async function main() {
  console.log("start")
  let next = 0
  const workers = Array.from({ length: Math.min(concurrency, clients) }, async () => {
    while (next < clients) {
      const i = next++
      await client(i)
    }
  })
  await Promise.all(workers)
  console.log("done")
  // Repos keep timers; the runner has what it needs.
  process.exit(0)
}

main().catch(e => {
  console.log(`error ${String(e?.message ?? e).replace(/\s+/g, " ")}`)
  process.exit(1)
})
