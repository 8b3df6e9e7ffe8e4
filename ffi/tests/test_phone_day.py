"""A phone's day through the generated bindings, against a real `phakhi serve` process.

The same calls a Kotlin or Swift app makes, made from Python (the bindings UniFFI generates for
the three languages share one C interface): open a passphrase store, enrol with an invite from
`phakhi admin invite`, record an activity in Thai, submit a tip with a member code from
`phakhi tipdesk`, sync over HTTP, receive the tip desk's reply, read the province back on a
second phone, carry a sync as bundle files through `phakhi admin import-bundle` on the stopped
server's data folder (the phone app closed and opened again while the files travel, a replaced
export's answer and damaged files refused), send a photo at the fast evidence pace the member
chose, and get typed errors for a wrong passphrase, a cancelled sync, an unreachable server, a
revoked device and an evidence pace that is not one. Every sync carries cover slots, as on a
real phone.

Run by `tests/tests/ffi_python.rs` (so by `cargo test --workspace`), which sets:
  PHAKHI_FFI_BINDINGS  folder holding phakhi_ffi.py and the library it loads
  PHAKHI_BIN           the `phakhi` binary
Standard library only. Every wait is bounded; the server is killed at the end whatever happens.
"""

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

sys.path.insert(0, os.environ["PHAKHI_FFI_BINDINGS"])
import phakhi_ffi as phakhi  # noqa: E402

PHAKHI_BIN = os.environ["PHAKHI_BIN"]
START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 60
PROVINCE = "TH-44"
# Argon2 cost for test stores: the default (64 MiB, 3 passes) is for phones, not for test runs.
CHEAP = phakhi.PassphraseCost(memory_kib=8 * 1024, iterations=1, parallelism=1)


# A valid Ed25519 public key that is not this HQ's (the curve's base point).
OTHER_NETWORK_KEY = "58" + "66" * 31


def mistyped(code):
    """The code with its first symbol changed: the check symbol must catch it."""
    first = "1" if code[0] != "1" else "2"
    return first + code[1:]


class Server:
    """A real `phakhi serve` on a free loopback port, with its own data folder."""

    def __init__(self, data, desk):
        self.data = data
        self.desk = desk
        self.tip_desk_key = None
        self.start()

    def start(self):
        data = self.data
        self.process = subprocess.Popen(
            [PHAKHI_BIN, "serve", "--addr", "127.0.0.1", "--port", "0", "--data", data],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        self.url = None
        seen = []
        while self.url is None:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"phakhi serve printed no address; stdout {seen}")
            if line is None:
                self.kill()
                raise AssertionError(f"phakhi serve exited; stdout {seen}")
            seen.append(line)
            if line.startswith("listening on http://"):
                self.url = line[len("listening on "):].strip()

    def _pump(self, lines):
        for line in self.process.stdout:
            lines.put(line)
        lines.put(None)

    def admin(self, *args):
        done = subprocess.run(
            [PHAKHI_BIN, "admin", "--data", self.data, *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise AssertionError(f"phakhi admin {args} failed: {done.stderr}")
        return done.stdout

    def tipdesk(self, *args):
        done = subprocess.run(
            [PHAKHI_BIN, "tipdesk", "--dir", self.desk, "--passphrase-env", "PHAKHI_TEST_DESK",
             *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            env={**os.environ, "PHAKHI_TEST_DESK": "โต๊ะรับเรื่อง ทดสอบ"},
        )
        if done.returncode != 0:
            raise AssertionError(f"phakhi tipdesk {args} failed: {done.stderr}")
        return done.stdout

    def after(self, out, prefix):
        for line in out.splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise AssertionError(f"no line starting with {prefix!r} in {out!r}")

    def invite(self, role="leader"):
        if self.tip_desk_key is None:
            self.tip_desk_key = self.after(self.tipdesk("init"), "tip-desk public key:")
        tip_desk_key = self.tip_desk_key
        out = self.admin(
            "invite",
            "--province", PROVINCE,
            "--role", role,
            "--server-url", self.url,
            "--tip-desk-key", tip_desk_key,
        )
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if len(lines) != 1:
            raise AssertionError(f"expected one invite line, got {lines}")
        return lines[0]

    def network_key(self):
        """HQ's invite-verifying key: what the app is built with (`phakhi admin keys`)."""
        return self.after(self.admin("keys"), "network key (Ed25519):")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=COMMAND_TIMEOUT_S)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=COMMAND_TIMEOUT_S)


class Recorder(phakhi.SyncProgress):
    """A progress callback that records what it heard and cancels when told to."""

    def __init__(self, cancel=False):
        self.calls = []
        self.cancel = cancel

    def on_progress(self, received, total):
        self.calls.append((received, total))

    def is_cancelled(self):
        return self.cancel


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sync_until_quiet(device, url, progress=None):
    summary = device.sync(url, progress)
    for _ in range(8):
        if not summary.more_waiting:
            break
        summary = device.sync(url, progress)
    return summary


class PhoneDay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="phakhi-ffi-")
        cls.server = Server(os.path.join(cls.tmp, "server"), os.path.join(cls.tmp, "desk"))

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def store(self, name):
        return os.path.join(self.tmp, name)

    def test_a_phone_day_enrol_record_tip_sync_read_back_revoke(self):
        path = self.store("phone-a.db")
        passphrase = "ภาคีต้านโกง 2569"
        phone = phakhi.PhakhiDevice.open_with_passphrase(path, passphrase, CHEAP)
        self.assertIsNone(phone.enrolment())

        # Before enrolment, syncing is a typed refusal.
        with self.assertRaises(phakhi.PhakhiError.NotEnrolled):
            phone.sync(None, None)

        # An invite HQ did not sign (checked against another network's key) is refused before
        # anything is pinned or sent.
        with self.assertRaises(phakhi.PhakhiError.InviteRefused):
            phone.enrol(self.server.invite(), OTHER_NETWORK_KEY, None)
        self.assertIsNone(phone.enrolment())
        enrolment = phone.enrol(self.server.invite(), self.server.network_key(), None)
        self.assertEqual(enrolment.provinces, [PROVINCE])
        self.assertEqual(enrolment.role, phakhi.DeviceRole.LEADER)
        self.assertTrue(enrolment.device_id)
        self.assertEqual(phone.enrolment(), enrolment)

        # The tip desk issues this member's network code; a mistyped one is caught on the phone.
        code = self.server.after(
            self.server.tipdesk("codes", "issue", "--alias", "สมชาย"), "member code for สมชาย:"
        )
        phakhi.check_member_code(code)
        with self.assertRaises(phakhi.PhakhiError.InvalidInput):
            phakhi.check_member_code(mistyped(code))

        # Offline work: a member, an activity in Thai, a tip.
        leader = phone.add_member(
            PROVINCE,
            phakhi.NewMemberInput(
                alias="ผู้นำมหาสารคาม",
                role=phakhi.MemberRole.CORE_LEADER,
                centre=None,
                joined="2026-11-01",
            ),
        )
        activity = phone.record_activity(
            PROVINCE,
            phakhi.NewActivityInput(
                kind=phakhi.ActivityKind.AWARENESS_TRAINING,
                audiences=[phakhi.Audience.YOUTH, phakhi.Audience.PUBLIC],
                title="อบรมเยาวชนต้านทุจริต",
                description="นักเรียนมัธยมร่วมเรียนรู้เรื่องการต่อต้านการทุจริต",
                date="2026-11-20",
                district="เมืองมหาสารคาม",
                attendance=45,
                organiser=leader,
                centre=None,
            ),
        )
        phone.add_attendance(PROVINCE, activity, 5)
        receipt = phone.submit_tip(
            phakhi.TipInput(
                category=phakhi.TipCategory.PROCUREMENT_FRAUD,
                report="ผู้รับเหมาสร้างถนนไม่ตรงตามสเปก งบประมาณถูกเบิกครบ",
                date="2026-11-18",
                province=PROVINCE,
                district="กันทรวิชัย",
                place="ถนนหมู่ 4",
                involved=["บริษัท ก."],
                member_code=code,
                want_reply=True,
            )
        )
        self.assertTrue(receipt)
        self.assertEqual(phone.outbox_len(), 1)
        [sent] = phone.tip_receipts()
        self.assertEqual((sent.receipt, sent.status), (receipt, phakhi.TipStatus.SENT))

        # Sync: the tip goes to the server, the documents go up.
        progress = Recorder()
        summary = sync_until_quiet(phone, self.server.url, progress)
        self.assertEqual(summary.tips_delivered, 1)
        self.assertGreater(summary.bytes_sent, 0)
        self.assertGreater(summary.bytes_received, 0)
        self.assertEqual(summary.doc_refusals, [])
        self.assertTrue(progress.calls, "the progress callback was never called")
        self.assertEqual(phone.outbox_len(), 0)
        [held] = phone.tip_receipts()
        self.assertEqual((held.receipt, held.status), (receipt, phakhi.TipStatus.RECEIVED))

        # The tip desk pulls the tip and answers it; the answer is written while HQ is stopped,
        # and reaches the phone on its next sync (the server comes back on a new port).
        self.server.stop()
        self.assertIn("1 new tip", self.server.tipdesk("pull", "--data", self.server.data))
        self.server.tipdesk(
            "reply", receipt, "--status", "under-review",
            "--message", "ได้รับเรื่องแล้ว กำลังตรวจสอบ", "--data", self.server.data,
        )
        self.server.start()
        summary = sync_until_quiet(phone, self.server.url)
        self.assertEqual(summary.replies_received, 1)
        [answered] = phone.tip_receipts()
        self.assertEqual(answered.status, phakhi.TipStatus.UNDER_REVIEW)
        self.assertEqual(
            answered.replies,
            [phakhi.TipReply(status=phakhi.TipStatus.UNDER_REVIEW,
                             message="ได้รับเรื่องแล้ว กำลังตรวจสอบ")],
        )

        # A coordinator's phone of the province reads the province back from the server.
        key = phakhi.generate_storage_key()
        self.assertEqual(len(key), 32)
        other = phakhi.PhakhiDevice.open_with_key(self.store("phone-b.db"), key)
        other.enrol(self.server.invite("coordinator"), self.server.network_key(), None)
        summary = sync_until_quiet(other, self.server.url)
        self.assertGreater(summary.changes_received, 0)
        self.assertIn(f"province/{PROVINCE}", summary.docs_changed)
        [member] = other.members(PROVINCE, False)
        self.assertEqual((member.id, member.alias), (leader, "ผู้นำมหาสารคาม"))
        [seen] = other.activities(PROVINCE, phakhi.ActivityQuery())
        self.assertEqual(seen.id, activity)
        self.assertEqual(seen.title, "อบรมเยาวชนต้านทุจริต")
        self.assertEqual(seen.district, "เมืองมหาสารคาม")
        self.assertEqual(seen.attendance, 50)
        self.assertEqual(set(seen.audiences), {phakhi.Audience.YOUTH, phakhi.Audience.PUBLIC})
        self.assertEqual(
            phakhi.display_date(seen.date, phakhi.DisplayLanguage.THAI, phakhi.DisplayEra.BUDDHIST),
            "20 พฤศจิกายน พ.ศ. 2569",
        )
        # Tips stay private to the phone that sent them.
        self.assertEqual(other.tip_receipts(), [])

        # The coordinator's phone archives the first phone's activity (a coordinator may change
        # every record of its province, another leader's phone only its own) and carries that
        # sync as bundle files to the stopped server; the app is closed while they travel. The
        # first phone sees it.
        other.archive_activity(PROVINCE, activity)
        del other
        other = self.carry_bundles(lambda: phakhi.PhakhiDevice.open_with_key(
            self.store("phone-b.db"), key))
        sync_until_quiet(phone, self.server.url)
        self.assertEqual(phone.activities(PROVINCE, phakhi.ActivityQuery()), [])
        [archived] = phone.activities(
            PROVINCE,
            phakhi.ActivityQuery(date_from="2026-01-01", date_to="2026-12-31", include_archived=True),
        )
        self.assertTrue(archived.archived)

        # Evidence pace: by default the chunks trickle through the cover slots every sync
        # carries; this member chooses speed, accepting that the upload shows on the network.
        self.assertEqual(phone.evidence_pace(), phakhi.EvidencePace.TRICKLE)
        phone.set_evidence_pace(phakhi.EvidencePace.FAST)
        self.assertEqual(phone.evidence_pace(), phakhi.EvidencePace.FAST)

        # Evidence: a phone photo with GPS and a camera serial is stripped before it is stored;
        # the app shows the report, the tip carries it, and at the fast pace the chunks go up
        # in the separate upload right after the sync (at the default pace they would take
        # about eighteen syncs' slots).
        with open(os.environ["PHAKHI_TEST_JPEG"], "rb") as f:
            photo = f.read()
        self.assertIn(os.environ["PHAKHI_TEST_SERIAL"].encode(), photo)
        attachment = phakhi.prepare_attachment(photo, "หลักฐาน.jpg")
        report = attachment.report()
        self.assertEqual(report.media_type, "image/jpeg")
        self.assertTrue(any(r.startswith("EXIF") for r in report.removed), report.removed)
        self.assertLess(report.stripped_size, report.original_size)
        self.assertFalse(report.needs_consent)
        with self.assertRaises(phakhi.PhakhiError.AttachmentRefused):
            phakhi.prepare_attachment(b"\0\0\0\x18ftypheic" + bytes(64), None)
        # A recording needs the member's consent before it can be sent.
        recording = phakhi.prepare_attachment(b"RIFF\0\0\0\0WAVE" + bytes(256), None)
        self.assertTrue(recording.report().needs_consent)
        tip = phakhi.TipInput(
            category=phakhi.TipCategory.BRIBERY,
            report="ภาพถ่ายการรับเงินหน้าที่ว่าการอำเภอ",
            date="2026-11-19",
            province=PROVINCE,
            district="เมืองมหาสารคาม",
            place=None,
            involved=[],
            member_code=code,
            want_reply=False,
        )
        with self.assertRaises(phakhi.PhakhiError.ConsentRequired):
            phone.submit_tip_with_attachments(tip, [recording])
        self.assertEqual(phone.pending_chunks(), 0)
        photo_receipt = phone.submit_tip_with_attachments(tip, [attachment])
        self.assertTrue(photo_receipt)
        self.assertEqual(phone.pending_chunks(), 2)  # one data chunk and the manifest
        summary = sync_until_quiet(phone, self.server.url)
        self.assertEqual(summary.tips_delivered, 1)
        self.assertEqual((summary.chunks_uploaded, summary.chunks_waiting), (2, 0))
        self.assertEqual(phone.pending_chunks(), 0)

        # A wrong passphrase is its own error, and opens nothing.
        with self.assertRaises(phakhi.PhakhiError.WrongPassphrase):
            phakhi.PhakhiDevice.open_with_passphrase(path, "ภาคีต้านโกง 2568", CHEAP)

        # A sync the app cancels ends cleanly and loses nothing.
        with self.assertRaises(phakhi.PhakhiError.Cancelled):
            phone.sync(self.server.url, Recorder(cancel=True))

        # A server that is not there.
        with self.assertRaises(phakhi.PhakhiError.NetworkUnreachable):
            phone.sync(f"http://127.0.0.1:{free_port()}", None)

        # The coordinator revokes the first phone: its next sync is refused as revoked.
        self.server.admin("revoke", enrolment.device_id)
        with self.assertRaises(phakhi.PhakhiError.DeviceRevoked):
            phone.sync(self.server.url, None)
        # The other phone still syncs.
        other.sync(self.server.url, None)

    def import_at_server(self, request, answer):
        """The carrier hands a request bundle to the stopped server's data folder."""
        out = self.server.admin("import-bundle", request, "--answer", answer)
        self.assertIn("answer written", out)

    def carry_bundles(self, open_phone):
        """Syncs by bundle files with the server stopped, closing and reopening the phone between
        export and import. Returns the phone, open."""
        phone = open_phone()
        stale = self.store("bundle-stale.bin")
        phone.export_bundle(stale)
        self.server.stop()
        try:
            for round in range(3):
                request = self.store(f"bundle-request-{round}.bin")
                answer = self.store(f"bundle-answer-{round}.bin")
                # Exporting again replaces the stale export (which never got its answer).
                phone.export_bundle(request)
                self.assertTrue(phone.bundle_pending())
                with open(request, "rb") as f:
                    self.assertEqual(f.read(4), b"PKBN")
                del phone  # the app is closed while the bundle travels
                self.import_at_server(request, answer)
                phone = open_phone()
                self.assertTrue(phone.bundle_pending())
                if round == 0:
                    self.refuse_wrong_answers(phone, stale, request, answer)
                step = phone.import_bundle(answer)
                if isinstance(step, phakhi.ExchangeStep.DONE):
                    self.assertFalse(phone.bundle_pending())
                    with self.assertRaises(phakhi.PhakhiError.NoExchangeInFlight):
                        phone.import_bundle(answer)
                    return phone
                self.assertIsInstance(step, phakhi.ExchangeStep.SEND_AGAIN)
            raise AssertionError("a bundle exchange took more than three round trips")
        finally:
            self.server.start()

    def refuse_wrong_answers(self, phone, stale, request, answer):
        """Wrong answer files are refused with their own errors and change nothing."""
        stale_answer = self.store("bundle-stale-answer.bin")
        self.import_at_server(stale, stale_answer)
        with self.assertRaises(phakhi.PhakhiError.BundleReplaced):
            phone.import_bundle(stale_answer)
        with open(answer, "rb") as f:
            good = f.read()
        cut = self.store("bundle-cut.bin")
        with open(cut, "wb") as f:
            f.write(good[: len(good) // 2])
        for wrong in (cut, request):
            with self.assertRaises(phakhi.PhakhiError.BundleDamaged):
                phone.import_bundle(wrong)
        self.assertTrue(phone.bundle_pending())

    def test_bad_input_is_a_typed_error_and_changes_nothing(self):
        phone = phakhi.PhakhiDevice.open_with_key(
            self.store("phone-c.db"), phakhi.generate_storage_key()
        )
        with self.assertRaises(phakhi.PhakhiError.InvalidInput):
            phakhi.PhakhiDevice.open_with_key(self.store("phone-d.db"), b"short")
        with self.assertRaises(phakhi.PhakhiError.InvalidInput):
            phone.members("TH-99", False)
        with self.assertRaises(phakhi.PhakhiError.InvalidInput):
            phone.add_member(
                PROVINCE,
                phakhi.NewMemberInput(
                    alias="ผู้นำ", role=phakhi.MemberRole.MEMBER, centre=None, joined="2026-02-30"
                ),
            )
        with self.assertRaises(phakhi.PhakhiError.NotFound):
            phone.archive_member(PROVINCE, "0" * 32)
        with self.assertRaises(phakhi.PhakhiError.InvalidInput):
            phone.archive_member(PROVINCE, "not-an-id")
        self.assertEqual(phone.members(PROVINCE, True), [])
        # The evidence pace takes only its two values; anything else is refused by the bindings
        # before it reaches the core, and the member's choice stays as it was, across a reopen.
        key = phakhi.generate_storage_key()
        paced = phakhi.PhakhiDevice.open_with_key(self.store("phone-e.db"), key)
        self.assertEqual(paced.evidence_pace(), phakhi.EvidencePace.TRICKLE)
        paced.set_evidence_pace(phakhi.EvidencePace.FAST)
        for wrong in ("fast", 2, None, phakhi.DisplayEra.COMMON):
            with self.assertRaises(ValueError):
                paced.set_evidence_pace(wrong)
        self.assertEqual(paced.evidence_pace(), phakhi.EvidencePace.FAST)
        del paced
        paced = phakhi.PhakhiDevice.open_with_key(self.store("phone-e.db"), key)
        self.assertEqual(paced.evidence_pace(), phakhi.EvidencePace.FAST)
        paced.set_evidence_pace(phakhi.EvidencePace.TRICKLE)
        self.assertEqual(paced.evidence_pace(), phakhi.EvidencePace.TRICKLE)
        with self.assertRaises(phakhi.PhakhiError.NoExchangeInFlight):
            phone.sync_response(b"\x01\x04")
        with self.assertRaises(phakhi.PhakhiError.InviteRefused):
            phone.enrol("not an invite", self.server.network_key(), None)
        with self.assertRaises(phakhi.PhakhiError.InviteRefused):
            phone.enrol(self.server.invite(), "not a key", None)
        self.assertIsNone(phone.enrolment())


if __name__ == "__main__":
    unittest.main(verbosity=2)
