//! The dashboard's two languages. Every label exists in Thai and English; dates show the
//! Buddhist era for Thai readers and the Common era for English ones unless the reader switches
//! the era separately; numbers carry grouping separators (Thai writing uses the same Arabic
//! digits and commas, so only the words change).

use phakhi_core::model::{ActivityKind, Audience, Date, MemberRole};

pub use crate::report::Lang;
pub use phakhi_core::model::Era;

/// What a page is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    pub lang: Lang,
    pub era: Era,
}

impl Locale {
    /// A language with its usual era.
    pub fn new(lang: Lang) -> Locale {
        Locale {
            lang,
            era: default_era(lang),
        }
    }

    pub fn labels(self) -> &'static Labels {
        match self.lang {
            Lang::Th => &TH,
            Lang::En => &EN,
        }
    }

    /// The `lang` attribute of the page.
    pub fn tag(self) -> &'static str {
        lang_tag(self.lang)
    }
}

pub fn lang_tag(lang: Lang) -> &'static str {
    match lang {
        Lang::Th => "th",
        Lang::En => "en",
    }
}

pub fn parse_lang(text: &str) -> Option<Lang> {
    match text {
        "th" => Some(Lang::Th),
        "en" => Some(Lang::En),
        _ => None,
    }
}

/// Thai readers count years in the Buddhist era, English readers in the Common era.
pub fn default_era(lang: Lang) -> Era {
    match lang {
        Lang::Th => Era::Buddhist,
        Lang::En => Era::Common,
    }
}

/// An integer with grouping separators: `1,234,567`.
pub fn number(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// [`number`] for counts.
pub fn count(value: u64) -> String {
    number(i64::try_from(value).unwrap_or(i64::MAX))
}

const TH_MONTHS: [&str; 12] = [
    "ม.ค.",
    "ก.พ.",
    "มี.ค.",
    "เม.ย.",
    "พ.ค.",
    "มิ.ย.",
    "ก.ค.",
    "ส.ค.",
    "ก.ย.",
    "ต.ค.",
    "พ.ย.",
    "ธ.ค.",
];
const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month_name(month: u8, lang: Lang) -> &'static str {
    let index = usize::from(month.clamp(1, 12) - 1);
    match lang {
        Lang::Th => TH_MONTHS.get(index),
        Lang::En => EN_MONTHS.get(index),
    }
    .copied()
    .unwrap_or("")
}

/// `พ.ย. 2569` or `Nov 2026`.
pub fn month(year_ce: i32, month: u8, locale: Locale) -> String {
    format!(
        "{} {}",
        month_name(month, locale.lang),
        locale.era.year(year_ce)
    )
}

/// `20 พ.ย. 2569` or `20 Nov 2026`.
pub fn date(date: Date, locale: Locale) -> String {
    format!(
        "{} {}",
        date.day(),
        month(date.year(), date.month(), locale)
    )
}

/// A moment (unix seconds) in UTC: `20 พ.ย. 2569 14:05 UTC`.
pub fn moment(unix: i64, locale: Locale) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{} {} {:02}:{:02} UTC",
            t.day(),
            month(t.year(), u8::from(t.month()), locale),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

/// How long ago, in whole days (`3 days ago`, `3 วันที่แล้ว`).
pub fn days_ago(seconds: i64, lang: Lang) -> String {
    let days = seconds.max(0) / 86_400;
    match (lang, days) {
        (Lang::Th, 0) => "วันนี้".into(),
        (Lang::Th, d) => format!("{} วันที่แล้ว", number(d)),
        (Lang::En, 0) => "today".into(),
        (Lang::En, 1) => "1 day ago".into(),
        (Lang::En, d) => format!("{} days ago", number(d)),
    }
}

pub fn kind(kind: ActivityKind, lang: Lang) -> &'static str {
    match (lang, kind) {
        (Lang::Th, ActivityKind::Campaign) => "รณรงค์",
        (Lang::Th, ActivityKind::KnowledgeDissemination) => "เผยแพร่ความรู้",
        (Lang::Th, ActivityKind::AwarenessTraining) => "อบรมสร้างความตระหนัก",
        (Lang::Th, ActivityKind::Meeting) => "ประชุม",
        (Lang::Th, ActivityKind::Other) => "อื่น ๆ",
        (Lang::En, ActivityKind::Campaign) => "Campaigns",
        (Lang::En, ActivityKind::KnowledgeDissemination) => "Knowledge dissemination",
        (Lang::En, ActivityKind::AwarenessTraining) => "Awareness training",
        (Lang::En, ActivityKind::Meeting) => "Meetings",
        (Lang::En, ActivityKind::Other) => "Other",
    }
}

pub fn audience(audience: Audience, lang: Lang) -> &'static str {
    match (lang, audience) {
        (Lang::Th, Audience::Public) => "ประชาชน",
        (Lang::Th, Audience::Youth) => "เยาวชน",
        (Lang::Th, Audience::PrivateSector) => "ภาคเอกชน",
        (Lang::Th, Audience::Officials) => "เจ้าหน้าที่รัฐ",
        (Lang::En, Audience::Public) => "Public",
        (Lang::En, Audience::Youth) => "Youth",
        (Lang::En, Audience::PrivateSector) => "Private sector",
        (Lang::En, Audience::Officials) => "Officials",
    }
}

pub fn role(role: MemberRole, lang: Lang) -> &'static str {
    match (lang, role) {
        (Lang::Th, MemberRole::CoreLeader) => "แกนนำหลัก",
        (Lang::Th, MemberRole::Member) => "สมาชิก",
        (Lang::Th, MemberRole::LeaderCandidate) => "ว่าที่แกนนำ",
        (Lang::En, MemberRole::CoreLeader) => "Core leaders",
        (Lang::En, MemberRole::Member) => "Members",
        (Lang::En, MemberRole::LeaderCandidate) => "Leader candidates",
    }
}

/// A device role tag (`leader`, `coordinator`, `relay`, `admin`) in words.
pub fn device_role(tag: &str, lang: Lang) -> String {
    match (lang, tag) {
        (Lang::Th, "leader") => "แกนนำ".into(),
        (Lang::Th, "coordinator") => "ผู้ประสานงาน".into(),
        (Lang::Th, "relay") => "ศูนย์จังหวัด (รีเลย์)".into(),
        (Lang::Th, "admin") => "ผู้ดูแล".into(),
        (Lang::En, "leader") => "Leader".into(),
        (Lang::En, "coordinator") => "Coordinator".into(),
        (Lang::En, "relay") => "Provincial relay".into(),
        (Lang::En, "admin") => "Admin".into(),
        (_, other) => other.to_owned(),
    }
}

/// Every fixed text of the dashboard, in one language.
#[derive(Debug)]
pub struct Labels {
    pub title: &'static str,
    pub skip: &'static str,
    pub overview: &'static str,
    pub scope_hq: &'static str,
    pub scope_relay: &'static str,
    pub region_fallback: &'static str,
    pub other_provinces: &'static str,
    pub province: &'static str,
    pub total: &'static str,
    pub members: &'static str,
    pub candidates: &'static str,
    pub centres: &'static str,
    pub activities: &'static str,
    pub attendance: &'static str,
    /// Sealed mailbox slots received: tips and cover alike (a server cannot tell them apart).
    pub sealed_slots: &'static str,
    pub side_by_side: &'static str,
    pub grid: &'static str,
    pub grid_help: &'static str,
    /// Shown on a province whose data holds records or documents that cannot be read.
    pub damaged: &'static str,
    pub no_data: &'static str,
    pub activities_per_month: &'static str,
    pub sealed_slots_per_month: &'static str,
    pub attendance_per_month: &'static str,
    pub members_by_role: &'static str,
    pub audiences_reached: &'static str,
    pub last_months: &'static str,
    pub month: &'static str,
    pub show_table: &'static str,
    pub sync_health: &'static str,
    pub sync_help: &'static str,
    pub device: &'static str,
    pub role: &'static str,
    pub provinces: &'static str,
    pub last_sync: &'static str,
    pub never: &'static str,
    pub silent: &'static str,
    pub healthy: &'static str,
    pub revoked: &'static str,
    pub status: &'static str,
    pub recent: &'static str,
    pub date: &'static str,
    pub activity_title: &'static str,
    pub kind: &'static str,
    pub district: &'static str,
    pub audiences: &'static str,
    pub candidate_list: &'static str,
    pub centre_list: &'static str,
    pub none: &'static str,
    pub back: &'static str,
    pub logout: &'static str,
    pub language: &'static str,
    pub era: &'static str,
    pub era_be: &'static str,
    pub era_ce: &'static str,
    pub updated: &'static str,
    pub live: &'static str,
    pub session_over: &'static str,
    pub need_login: &'static str,
    pub need_login_body: &'static str,
    pub link_used: &'static str,
    pub link_expired: &'static str,
    pub link_unknown: &'static str,
    pub signed_in: &'static str,
    pub open_dashboard: &'static str,
    pub signed_out: &'static str,
    pub not_found: &'static str,
    /// Says what the sealed-slot figures count, and that only the tip desk counts tips.
    pub sealed_slots_note: &'static str,
    pub all_figures: &'static str,
}

pub static TH: Labels = Labels {
    title: "แดชบอร์ดสำนักงานใหญ่ ภาคี",
    skip: "ข้ามไปยังเนื้อหา",
    overview: "ภาพรวม",
    scope_hq: "สำนักงานใหญ่: ทุกจังหวัด",
    scope_relay: "ศูนย์ประสานงานจังหวัด: เฉพาะจังหวัดของศูนย์นี้",
    region_fallback: "เขต 4 (อีสานตอนบน 12 จังหวัด)",
    other_provinces: "จังหวัดอื่น",
    province: "จังหวัด",
    total: "รวม",
    members: "สมาชิก",
    candidates: "ว่าที่แกนนำ",
    centres: "ศูนย์ประสานงาน",
    activities: "กิจกรรม",
    attendance: "ผู้เข้าร่วมทั้งหมด",
    sealed_slots: "ซองปิดผนึกที่ได้รับ",
    side_by_side: "จังหวัดในเขตเทียบกัน",
    grid: "แผนผังจังหวัดตามจำนวนกิจกรรม",
    grid_help: "สีเข้มขึ้นเมื่อมีกิจกรรมมากขึ้น เลือกจังหวัดเพื่อดูรายละเอียด",
    damaged: "ข้อมูลเสียหาย",
    no_data: "ยังไม่มีข้อมูล",
    activities_per_month: "กิจกรรมรายเดือน แยกตามประเภท",
    sealed_slots_per_month: "ซองปิดผนึกที่ได้รับรายเดือน (ทั้งเบาะแสและซองอำพราง)",
    attendance_per_month: "ผู้เข้าร่วมรายเดือน",
    members_by_role: "สมาชิกตามบทบาท",
    audiences_reached: "กลุ่มเป้าหมายที่เข้าถึง (จำนวนกิจกรรม)",
    last_months: "12 เดือนล่าสุด",
    month: "เดือน",
    show_table: "ดูเป็นตาราง",
    sync_health: "สถานะการซิงก์",
    sync_help: "อุปกรณ์และศูนย์จังหวัดที่ไม่ได้ซิงก์นานกว่าเกณฑ์จะถูกเน้น",
    device: "อุปกรณ์",
    role: "บทบาท",
    provinces: "จังหวัด",
    last_sync: "ซิงก์สำเร็จล่าสุด",
    never: "ยังไม่เคย",
    silent: "เงียบเกิน",
    healthy: "ปกติ",
    revoked: "ถูกเพิกถอน",
    status: "สถานะ",
    recent: "กิจกรรม",
    date: "วันที่",
    activity_title: "ชื่อกิจกรรม",
    kind: "ประเภท",
    district: "อำเภอ",
    audiences: "กลุ่มเป้าหมาย",
    candidate_list: "ว่าที่แกนนำ (นามแฝง)",
    centre_list: "ศูนย์ประสานงาน",
    none: "ไม่มี",
    back: "กลับไปภาพรวม",
    logout: "ออกจากระบบ",
    language: "ภาษา",
    era: "ศักราช",
    era_be: "พ.ศ.",
    era_ce: "ค.ศ.",
    updated: "ข้อมูล ณ",
    live: "อัปเดตอัตโนมัติเมื่อมีข้อมูลใหม่",
    session_over: "หมดเวลาการเข้าระบบ ขอลิงก์เข้าระบบใหม่",
    need_login: "ต้องใช้ลิงก์เข้าระบบ",
    need_login_body: "แดชบอร์ดนี้สำหรับผู้ดูแลเท่านั้น ให้ผู้ดูแลเซิร์ฟเวอร์รันคำสั่งด้านล่างแล้วเปิดลิงก์ที่ได้ ลิงก์ใช้ได้ครั้งเดียว",
    link_used: "ลิงก์นี้ถูกใช้ไปแล้ว ลิงก์เข้าระบบใช้ได้ครั้งเดียว",
    link_expired: "ลิงก์นี้หมดอายุแล้ว",
    link_unknown: "ไม่รู้จักลิงก์นี้ ตรวจสอบว่าคัดลอกมาครบ",
    signed_in: "เข้าระบบแล้ว",
    open_dashboard: "เปิดแดชบอร์ด",
    signed_out: "ออกจากระบบแล้ว",
    not_found: "ไม่พบหน้านี้",
    sealed_slots_note: "โทรศัพท์ทุกเครื่องส่งซองปิดผนึกสองซองทุกครั้งที่ซิงก์ ไม่ว่าสมาชิกจะแจ้งเบาะแสหรือไม่ และเซิร์ฟเวอร์แยกเบาะแสออกจากซองอำพรางไม่ได้ ตัวเลขนี้จึงนับซองตามเวลาที่มาถึงเซิร์ฟเวอร์นี้ ไม่ใช่จำนวนเบาะแส มีเพียงโต๊ะรับเบาะแสเท่านั้นที่รู้ว่ามีเบาะแสกี่เรื่อง",
    all_figures: "ตัวเลขทั้งหมดของจังหวัด",
};

pub static EN: Labels = Labels {
    title: "Phakhi headquarters dashboard",
    skip: "Skip to content",
    overview: "Overview",
    scope_hq: "Headquarters: every province",
    scope_relay: "Provincial relay: this centre's provinces",
    region_fallback: "Region 4 (upper north-east, 12 provinces)",
    other_provinces: "Other provinces",
    province: "Province",
    total: "Total",
    members: "Members",
    candidates: "Leader candidates",
    centres: "Coordination centres",
    activities: "Activities",
    attendance: "Total attendance",
    sealed_slots: "Sealed slots received",
    side_by_side: "The region's provinces side by side",
    grid: "Provinces by number of activities",
    grid_help: "Darker means more activities. Choose a province for its details.",
    damaged: "damaged data",
    no_data: "No data yet",
    activities_per_month: "Activities per month, by kind",
    sealed_slots_per_month: "Sealed slots received per month (tips and cover alike)",
    attendance_per_month: "Attendance per month",
    members_by_role: "Members by role",
    audiences_reached: "Audiences reached (activities)",
    last_months: "last 12 months",
    month: "Month",
    show_table: "Show as a table",
    sync_health: "Sync health",
    sync_help: "Devices and relays silent for longer than the threshold are highlighted.",
    device: "Device",
    role: "Role",
    provinces: "Provinces",
    last_sync: "Last successful sync",
    never: "never",
    silent: "Silent for more than",
    healthy: "OK",
    revoked: "revoked",
    status: "Status",
    recent: "Activities",
    date: "Date",
    activity_title: "Title",
    kind: "Kind",
    district: "District",
    audiences: "Audiences",
    candidate_list: "Leader candidates (aliases)",
    centre_list: "Coordination centres",
    none: "none",
    back: "Back to the overview",
    logout: "Log out",
    language: "Language",
    era: "Era",
    era_be: "BE",
    era_ce: "CE",
    updated: "Figures as of",
    live: "Updates by itself when new data arrives",
    session_over: "Your session has ended: ask for a new login link.",
    need_login: "A login link is needed",
    need_login_body: "This dashboard is for administrators only. On the server, run the command below and open the link it prints. Each link works once.",
    link_used: "This link was already used: each login link works once.",
    link_expired: "This link has expired.",
    link_unknown: "This link is not known here: check that it was copied completely.",
    signed_in: "Signed in",
    open_dashboard: "Open the dashboard",
    signed_out: "Signed out",
    not_found: "No such page",
    sealed_slots_note: "Every phone's sync carries two sealed slots, whether or not its member tipped, and the server cannot tell a tip from cover: these are slots, counted by when they reached this server, not tips; only the tip desk knows how many are tips.",
    all_figures: "Every figure of the province",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_grouping_separators() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1_000), "1,000");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(number(-45_000), "-45,000");
        assert_eq!(count(u64::MAX), "9,223,372,036,854,775,807");
    }

    #[test]
    fn dates_in_thai_use_the_buddhist_era_and_in_english_the_common_era() {
        let day = Date::from_ymd(2026, 11, 20).unwrap();
        let th = Locale::new(Lang::Th);
        let en = Locale::new(Lang::En);
        assert_eq!(date(day, th), "20 พ.ย. 2569");
        assert_eq!(date(day, en), "20 Nov 2026");
        assert_eq!(month(2019, 3, th), "มี.ค. 2562");
        assert_eq!(month(2019, 3, en), "Mar 2019");
        // The era can be switched apart from the language.
        let th_ce = Locale {
            lang: Lang::Th,
            era: Era::Common,
        };
        assert_eq!(date(day, th_ce), "20 พ.ย. 2026");
        // 2026-11-20 14:05:00 UTC
        assert_eq!(moment(1_795_183_500, th), "20 พ.ย. 2569 14:05 UTC");
        assert_eq!(moment(1_795_183_500, en), "20 Nov 2026 14:05 UTC");
        assert_eq!(days_ago(3 * 86_400 + 5, Lang::En), "3 days ago");
        assert_eq!(days_ago(86_400, Lang::En), "1 day ago");
        assert_eq!(days_ago(10, Lang::Th), "วันนี้");
        assert_eq!(days_ago(1_200 * 86_400, Lang::Th), "1,200 วันที่แล้ว");
    }

    #[test]
    fn tags_round_trip() {
        for lang in [Lang::Th, Lang::En] {
            assert_eq!(parse_lang(lang_tag(lang)), Some(lang));
        }
        assert_eq!(parse_lang("fr"), None);
    }
}
