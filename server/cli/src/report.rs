//! `phakhi report`: prints headquarters' figures ([`phakhi_server::report`]) as a table, JSON
//! or CSV.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use phakhi_core::model::{ActivityKind, Audience, Era, MemberRole};
use phakhi_server::dashboard::i18n::parse_lang;
use phakhi_server::report::{Lang, Report, ReportError, build};

use crate::field::dates;
use crate::table::Table;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The HQ server's data folder.
    #[arg(long, env = "PHAKHI_DATA", value_name = "DIR")]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Language of labels and province names.
    #[arg(long, default_value = "th", value_parser = lang_arg())]
    pub lang: Lang,
    /// Era of the dates in the table [default: be with --lang th, ce with --lang en, as on the
    /// dashboard and in `phakhi admin devices`]. JSON and CSV give timestamps instead: RFC 3339
    /// in UTC (`last_sync`) and unix seconds (`last_sync_unix`), null or empty when never.
    #[arg(long, value_parser = dates::era_arg())]
    pub era: Option<Era>,
}

/// Reads `--lang` (`th` or `en`) as the report's [`Lang`].
fn lang_arg() -> impl TypedValueParser<Value = Lang> {
    PossibleValuesParser::new(["th", "en"]).try_map(|text| {
        parse_lang(&text).ok_or_else(|| format!("{text:?} is not a language: give th or en"))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// One row per province, then a blank line and one row per device.
    Csv,
}

struct Labels {
    province: &'static str,
    roles: [&'static str; 3],
    centres: &'static str,
    activities: &'static str,
    attendance: &'static str,
    sealed_slots: &'static str,
    /// Printed under the figures: what `sealed_slots` counts, and who knows the tips.
    sealed_slots_note: &'static str,
    device: &'static str,
    role: &'static str,
    provinces: &'static str,
    last_sync: &'static str,
}

fn labels(lang: Lang) -> Labels {
    match lang {
        Lang::Th => Labels {
            province: "จังหวัด",
            roles: ["แกนนำหลัก", "สมาชิก", "ว่าที่แกนนำ"],
            centres: "ศูนย์ประสานงาน",
            activities: "กิจกรรม",
            attendance: "ผู้เข้าร่วม",
            sealed_slots: "ซองปิดผนึก",
            sealed_slots_note: "ซองปิดผนึก: ซองที่เซิร์ฟเวอร์นี้ได้รับ ทั้งเบาะแสและซองอำพราง \
                                (โทรศัพท์ทุกเครื่องส่งสองซองทุกครั้งที่ซิงก์ ไม่ว่าสมาชิกจะแจ้งเบาะแสหรือไม่) \
                                เซิร์ฟเวอร์แยกสองอย่างนี้ออกจากกันไม่ได้ \
                                มีเพียงโต๊ะรับเบาะแสเท่านั้นที่รู้ว่ามีเบาะแสกี่เรื่อง",
            device: "อุปกรณ์",
            role: "บทบาท",
            provinces: "จังหวัด",
            last_sync: "ซิงก์ล่าสุด",
        },
        Lang::En => Labels {
            province: "PROVINCE",
            roles: ["CORE LEADERS", "MEMBERS", "LEADER CANDIDATES"],
            centres: "CENTRES",
            activities: "ACTIVITIES",
            attendance: "ATTENDANCE",
            sealed_slots: "SEALED SLOTS",
            sealed_slots_note: "SEALED SLOTS: sealed envelopes this server received, tips and cover \
                                alike (every phone's sync carries two, whether or not its member \
                                tipped); the server cannot tell them apart: only the tip desk \
                                knows how many are tips.",
            device: "DEVICE",
            role: "ROLE",
            provinces: "PROVINCES",
            last_sync: "LAST SYNC",
        },
    }
}

fn kind_label(kind: ActivityKind, lang: Lang) -> String {
    match (lang, kind) {
        (Lang::Th, ActivityKind::Campaign) => "รณรงค์".into(),
        (Lang::Th, ActivityKind::KnowledgeDissemination) => "เผยแพร่ความรู้".into(),
        (Lang::Th, ActivityKind::AwarenessTraining) => "อบรมสร้างความตระหนัก".into(),
        (Lang::Th, ActivityKind::Meeting) => "ประชุม".into(),
        (Lang::Th, ActivityKind::Other) => "อื่น ๆ".into(),
        (Lang::En, kind) => kind.as_str().replace('_', " ").to_uppercase(),
    }
}

fn audience_label(audience: Audience, lang: Lang) -> String {
    match (lang, audience) {
        (Lang::Th, Audience::Public) => "ประชาชน".into(),
        (Lang::Th, Audience::Youth) => "เยาวชน".into(),
        (Lang::Th, Audience::PrivateSector) => "ภาคเอกชน".into(),
        (Lang::Th, Audience::Officials) => "เจ้าหน้าที่รัฐ".into(),
        (Lang::En, audience) => audience.as_str().replace('_', " ").to_uppercase(),
    }
}

fn count(map: &BTreeMap<String, u64>, key: &str) -> String {
    map.get(key).copied().unwrap_or(0).to_string()
}

/// The report as text in the chosen format.
pub fn render(report: &Report, format: Format, lang: Lang) -> String {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Table => render_table(report, lang),
        Format::Csv => render_csv(report),
    }
}

fn render_table(report: &Report, lang: Lang) -> String {
    let l = labels(lang);
    let mut summary = Table::new([l.province].into_iter().chain(l.roles).chain([
        l.centres,
        l.activities,
        l.attendance,
        l.sealed_slots,
    ]));
    let mut kinds = Table::new(
        std::iter::once(l.province.to_owned())
            .chain(ActivityKind::ALL.iter().map(|k| kind_label(*k, lang))),
    );
    let mut audiences = Table::new(
        std::iter::once(l.province.to_owned())
            .chain(Audience::ALL.iter().map(|a| audience_label(*a, lang))),
    );
    for p in &report.provinces {
        let label = format!("{} {}", p.code, p.name);
        summary.row(
            [label.clone()]
                .into_iter()
                .chain(
                    MemberRole::ALL
                        .iter()
                        .map(|r| count(&p.members, r.as_str())),
                )
                .chain([
                    p.centres.to_string(),
                    p.activities.to_string(),
                    p.attendance.to_string(),
                    p.sealed_slots.to_string(),
                ]),
        );
        kinds.row(
            std::iter::once(label.clone()).chain(
                ActivityKind::ALL
                    .iter()
                    .map(|k| count(&p.activities_by_kind, k.as_str())),
            ),
        );
        audiences.row(
            std::iter::once(label).chain(
                Audience::ALL
                    .iter()
                    .map(|a| count(&p.activities_by_audience, a.as_str())),
            ),
        );
    }
    let mut devices = Table::new([l.device, l.role, l.provinces, l.last_sync]);
    for d in &report.devices {
        devices.row([
            d.device.clone(),
            if d.revoked {
                format!("{} (revoked)", d.role)
            } else {
                d.role.clone()
            },
            d.provinces.join(","),
            d.last_sync_shown.clone(),
        ]);
    }
    let mut out = String::new();
    if report.provinces.is_empty() {
        out.push_str("no provinces have data yet\n");
    } else {
        out.push_str(&summary.render());
        out.push_str(l.sealed_slots_note);
        out.push_str("\n\n");
        out.push_str(&kinds.render());
        out.push('\n');
        out.push_str(&audiences.render());
    }
    if !report.devices.is_empty() {
        out.push('\n');
        out.push_str(&devices.render());
    }
    if !report.damaged.is_empty() {
        out.push_str(&format!(
            "\n{} record(s) cannot be read and are left out of the figures (fix them in the app \
             that wrote them):\n",
            report.damaged.len()
        ));
        for d in &report.damaged {
            out.push_str(&format!("  {} {}: {}\n", d.document, d.record, d.reason));
        }
    }
    out
}

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_line<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let mut line = fields
        .into_iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn render_csv(report: &Report) -> String {
    let mut header = vec!["province".to_owned(), "name".to_owned()];
    header.extend(
        MemberRole::ALL
            .iter()
            .map(|r| format!("members_{}", r.as_str())),
    );
    header.extend(["centres", "activities"].map(String::from));
    header.extend(
        ActivityKind::ALL
            .iter()
            .map(|k| format!("kind_{}", k.as_str())),
    );
    header.extend(
        Audience::ALL
            .iter()
            .map(|a| format!("audience_{}", a.as_str())),
    );
    header.extend(["attendance", "leader_candidates", "sealed_slots"].map(String::from));
    let mut out = csv_line(&header);
    for p in &report.provinces {
        let mut row = vec![p.code.clone(), p.name.clone()];
        row.extend(
            MemberRole::ALL
                .iter()
                .map(|r| count(&p.members, r.as_str())),
        );
        row.extend([p.centres.to_string(), p.activities.to_string()]);
        row.extend(
            ActivityKind::ALL
                .iter()
                .map(|k| count(&p.activities_by_kind, k.as_str())),
        );
        row.extend(
            Audience::ALL
                .iter()
                .map(|a| count(&p.activities_by_audience, a.as_str())),
        );
        row.extend([
            p.attendance.to_string(),
            p.leader_candidates.to_string(),
            p.sealed_slots.to_string(),
        ]);
        out.push_str(&csv_line(&row));
    }
    out.push('\n');
    out.push_str(&csv_line([
        "device",
        "role",
        "provinces",
        "last_sync_unix",
        "revoked",
    ]));
    for d in &report.devices {
        out.push_str(&csv_line([
            d.device.clone(),
            d.role.clone(),
            d.provinces.join(" "),
            d.last_sync_unix.map_or_else(String::new, |t| t.to_string()),
            d.revoked.to_string(),
        ]));
    }
    out
}

/// Runs `phakhi report`.
pub fn run(args: ReportArgs) -> Result<(), ReportError> {
    let era = args.era.unwrap_or(args.lang.usual_era());
    let report = build(&args.data, args.lang, era)?;
    print!("{}", render(&report, args.format, args.lang));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_server::report::ProvinceReport;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("มหาสารคาม"), "มหาสารคาม");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn every_province_shows_in_the_table() {
        let province = |code: &str, name: &str| ProvinceReport {
            code: code.into(),
            name: name.into(),
            ..ProvinceReport::default()
        };
        let report = Report {
            provinces: vec![province("TH-40", "ขอนแก่น"), province("TH-44", "มหาสารคาม")],
            devices: Vec::new(),
            damaged: Vec::new(),
        };
        let text = render_table(&report, Lang::Th);
        assert!(
            text.contains("TH-40 ขอนแก่น") && text.contains("TH-44 มหาสารคาม"),
            "{text}"
        );
    }
}
