//! The dashboard's HTML, written as strings with every value escaped on the way in ([`escape`]):
//! member aliases, activity titles, districts and centre names are typed by people in the field.
//! Each figure sits in an element with stable `data-province`, `data-figure` and `data-value`
//! attributes, so scripts and tests read numbers without parsing formatted text. Pages work with
//! no script at all; the small script only swaps in fresher figures.

use std::fmt::Write as _;

use phakhi_core::model::{ActivityKind, Audience, MemberRole, ProvinceCode};

use super::figures::{self, Monthly, RegionView};
use super::i18n::{self, Labels, Lang, Locale};
use super::svg::{self, Chart, Series};
use crate::report::{Dataset, DeviceReport, Month, ProvinceDetail, ProvinceReport};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// What every page of a signed-in reader shares.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub locale: Locale,
    /// `hq` or `relay`.
    pub role: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// The data version shown (the figures endpoint's ETag).
    pub version: &'a str,
    /// Devices silent longer than this many days are highlighted.
    pub silent_days: i64,
    /// The page's own path, for the language and era switches.
    pub path: &'a str,
}

fn province_name(code: ProvinceCode, lang: Lang) -> &'static str {
    match lang {
        Lang::Th => code.name_th(),
        Lang::En => code.name_en(),
    }
}

/// The page shell: skip link, header with scope, switches and logout, the live-status region,
/// then `body` inside `<main id="main">`.
fn shell(ctx: &Context<'_>, heading: &str, body: &str) -> String {
    let l = ctx.locale.labels();
    let scope = if ctx.role == "relay" {
        l.scope_relay
    } else {
        l.scope_hq
    };
    let switch = |query: &str, label: &str, current: bool, data: &str| {
        if current {
            format!("<span class=\"current\" aria-current=\"true\" {data}>{label}</span>")
        } else {
            format!(
                "<a href=\"{}?{query}\" {data}>{label}</a>",
                escape(ctx.path)
            )
        }
    };
    let lang = ctx.locale.lang;
    let era = ctx.locale.era;
    let updated = format!("{} {}", l.updated, i18n::moment(ctx.now, ctx.locale));
    format!(
        "<!DOCTYPE html><html lang=\"{tag}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{heading} · {title}</title>\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\
         <script src=\"/dashboard/assets/dashboard.js\" defer></script></head>\
         <body><a class=\"skip\" href=\"#main\">{skip}</a>\
         <header class=\"top\"><div class=\"brand\"><a href=\"/dashboard\">{title}</a>\
         <span class=\"scope\">{scope}</span></div>\
         <nav aria-label=\"{language} / {era_label}\" class=\"switches\">\
         <span class=\"group\" role=\"group\" aria-label=\"{language}\">{th} {en}</span>\
         <span class=\"group\" role=\"group\" aria-label=\"{era_label}\">{be} {ce}</span>\
         <form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\" \
         data-action=\"logout\">{logout}</button></form></nav></header>\
         <p id=\"live-status\" class=\"live\" role=\"status\" aria-live=\"polite\">{updated} · {live}</p>\
         <main id=\"main\" tabindex=\"-1\" data-version=\"{version}\" data-lang=\"{tag}\" \
         data-updated-text=\"{updated_attr}\" data-session-over=\"{session_over}\">\
         <h1>{heading}</h1>{body}</main></body></html>",
        tag = ctx.locale.tag(),
        heading = escape(heading),
        title = l.title,
        skip = l.skip,
        language = l.language,
        era_label = l.era,
        th = switch(
            "lang=th",
            "ไทย",
            lang == Lang::Th,
            "data-lang-switch=\"th\" lang=\"th\""
        ),
        en = switch(
            "lang=en",
            "English",
            lang == Lang::En,
            "data-lang-switch=\"en\" lang=\"en\""
        ),
        be = switch(
            "era=be",
            l.era_be,
            era == i18n::Era::Buddhist,
            "data-era-switch=\"be\""
        ),
        ce = switch(
            "era=ce",
            l.era_ce,
            era == i18n::Era::Common,
            "data-era-switch=\"ce\""
        ),
        logout = l.logout,
        live = l.live,
        version = escape(ctx.version),
        updated_attr = escape(&format!("{updated} · {}", l.live)),
        session_over = escape(l.session_over),
    )
}

/// A page for someone without a session (or after a failed login): what happened and how to get
/// in. Needs no stylesheet beyond the public one.
pub fn message_page(locale: Locale, heading: &str, text: &str, command: bool) -> String {
    let l = locale.labels();
    let command = if command {
        "<pre class=\"command\"><code>phakhi admin --data DIR dashboard-login</code></pre>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html><html lang=\"{tag}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{heading} · {title}</title>\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\"></head>\
         <body><main id=\"main\" class=\"message\" data-page=\"message\"><h1>{heading}</h1>\
         <p>{text}</p>{command}</main></body></html>",
        tag = locale.tag(),
        heading = escape(heading),
        text = escape(text),
        title = l.title,
    )
}

/// The page a fresh login lands on: it moves on to the dashboard by itself (a same-site step,
/// so the SameSite=Strict cookie is sent even when the link was opened from another site).
pub fn signed_in_page(locale: Locale) -> String {
    let l = locale.labels();
    format!(
        "<!DOCTYPE html><html lang=\"{tag}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/dashboard\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{signed_in} · {title}</title>\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\"></head>\
         <body><main id=\"main\" class=\"message\" data-page=\"signed-in\"><h1>{signed_in}</h1>\
         <p><a href=\"/dashboard\">{open}</a></p></main></body></html>",
        tag = locale.tag(),
        signed_in = l.signed_in,
        title = l.title,
        open = l.open_dashboard,
    )
}

fn figure_cell(code: &str, figure: &str, value: i64) -> String {
    format!(
        "<td data-province=\"{}\" data-figure=\"{}\" data-value=\"{value}\">{}</td>",
        escape(code),
        escape(figure),
        i18n::number(value)
    )
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Every figure of the report, as (key, label, value) in a fixed order.
fn figure_rows(p: &ProvinceReport, l: &Labels, lang: Lang) -> Vec<(String, String, i64)> {
    let mut rows = Vec::new();
    for role in MemberRole::ALL {
        rows.push((
            format!("members.{}", role.as_str()),
            format!("{}: {}", l.members, i18n::role(*role, lang)),
            as_i64(p.members.get(role.as_str()).copied().unwrap_or(0)),
        ));
    }
    rows.push((
        "leader_candidates".into(),
        l.candidates.into(),
        as_i64(p.leader_candidates),
    ));
    rows.push(("centres".into(), l.centres.into(), as_i64(p.centres)));
    rows.push((
        "activities".into(),
        l.activities.into(),
        as_i64(p.activities),
    ));
    for kind in ActivityKind::ALL {
        rows.push((
            format!("activities_by_kind.{}", kind.as_str()),
            format!("{}: {}", l.activities, i18n::kind(*kind, lang)),
            as_i64(
                p.activities_by_kind
                    .get(kind.as_str())
                    .copied()
                    .unwrap_or(0),
            ),
        ));
    }
    for audience in Audience::ALL {
        rows.push((
            format!("activities_by_audience.{}", audience.as_str()),
            format!("{}: {}", l.audiences, i18n::audience(*audience, lang)),
            as_i64(
                p.activities_by_audience
                    .get(audience.as_str())
                    .copied()
                    .unwrap_or(0),
            ),
        ));
    }
    rows.push(("attendance".into(), l.attendance.into(), p.attendance));
    rows.push((
        "sealed_slots".into(),
        l.sealed_slots.into(),
        as_i64(p.sealed_slots),
    ));
    rows
}

fn month_labels(months: &[Month], locale: Locale) -> Vec<String> {
    months
        .iter()
        .map(|(y, m)| i18n::month(*y, *m, locale))
        .collect()
}

fn activity_chart(id: &str, months: &[Month], data: &Monthly, locale: Locale) -> Chart {
    let l = locale.labels();
    Chart {
        id: id.to_owned(),
        title: format!("{} ({})", l.activities_per_month, l.last_months),
        description: ActivityKind::ALL
            .iter()
            .map(|k| {
                let total: u64 = months
                    .iter()
                    .filter_map(|m| data.activities.get(m)?.get(k.as_str()))
                    .sum();
                format!("{}: {}", i18n::kind(*k, locale.lang), i18n::count(total))
            })
            .collect::<Vec<_>>()
            .join("; "),
        categories: month_labels(months, locale),
        series: ActivityKind::ALL
            .iter()
            .map(|k| Series {
                name: i18n::kind(*k, locale.lang).to_owned(),
                values: months
                    .iter()
                    .map(|m| {
                        as_i64(
                            data.activities
                                .get(m)
                                .and_then(|kinds| kinds.get(k.as_str()))
                                .copied()
                                .unwrap_or(0),
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn single_chart(
    id: &str,
    title: &str,
    months: &[Month],
    values: Vec<i64>,
    locale: Locale,
) -> Chart {
    let l = locale.labels();
    let total: i64 = values.iter().copied().fold(0, i64::saturating_add);
    Chart {
        id: id.to_owned(),
        title: format!("{title} ({})", l.last_months),
        description: format!("{}: {}", l.total, i18n::number(total)),
        categories: month_labels(months, locale),
        series: vec![Series {
            name: title.to_owned(),
            values,
        }],
    }
}

/// A chart in a `<figure>`, with its table behind a disclosure.
fn figure(chart: &Chart, locale: Locale, note: Option<&str>) -> String {
    let l = locale.labels();
    let note = note
        .map(|n| format!("<p class=\"note\">{}</p>", escape(n)))
        .unwrap_or_default();
    format!(
        "<figure class=\"chart-box\" data-chart=\"{id}\"><figcaption>{title}</figcaption>{svg}{note}\
         <details><summary>{show}</summary>{table}</details></figure>",
        id = escape(&chart.id),
        title = escape(&chart.title),
        svg = svg::stacked_bars(chart, l.no_data),
        show = l.show_table,
        table = svg::table(chart, l.month),
    )
}

fn charts_over_time(
    prefix: &str,
    data: &Monthly,
    months: &[Month],
    locale: Locale,
    with_attendance: bool,
) -> String {
    let l = locale.labels();
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&figure(
        &activity_chart(&format!("{prefix}-activities"), months, data, locale),
        locale,
        None,
    ));
    if with_attendance {
        let values = months
            .iter()
            .map(|m| data.attendance.get(m).copied().unwrap_or(0))
            .collect();
        out.push_str(&figure(
            &single_chart(
                &format!("{prefix}-attendance"),
                l.attendance_per_month,
                months,
                values,
                locale,
            ),
            locale,
            None,
        ));
    }
    let values = months
        .iter()
        .map(|m| as_i64(data.sealed_slots.get(m).copied().unwrap_or(0)))
        .collect();
    out.push_str(&figure(
        &single_chart(
            &format!("{prefix}-sealed-slots"),
            l.sealed_slots_per_month,
            months,
            values,
            locale,
        ),
        locale,
        Some(l.sealed_slots_note),
    ));
    out.push_str("</div>");
    out
}

fn heat(activities: u64, max: u64) -> u64 {
    if activities == 0 || max == 0 {
        0
    } else {
        (activities * 4).div_ceil(max).clamp(1, 4)
    }
}

fn current_month(now: i64) -> Month {
    time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| (t.year(), u8::from(t.month())))
        .unwrap_or((2026, 1))
}

fn region_section(
    ctx: &Context<'_>,
    dataset: &Dataset,
    region: &RegionView,
    index: usize,
) -> String {
    let l = ctx.locale.labels();
    let lang = ctx.locale.lang;
    let name = match (&region.name, region.fallback) {
        (Some((th, en)), _) => match lang {
            Lang::Th => th.clone(),
            Lang::En => en.clone(),
        },
        (None, true) => l.region_fallback.to_owned(),
        (None, false) => l.other_provinces.to_owned(),
    };
    let reports: Vec<ProvinceReport> = region
        .provinces
        .iter()
        .map(|code| figures::province_report(dataset, *code))
        .collect();
    let max = reports.iter().map(|p| p.activities).max().unwrap_or(0);
    let mut out = format!(
        "<section class=\"region\" aria-labelledby=\"region-{index}\" data-region=\"{index}\">\
         <h2 id=\"region-{index}\">{}</h2>",
        escape(&name)
    );
    // The grid of provinces, coloured by activity.
    let _ = write!(
        out,
        "<h3>{}</h3><p class=\"note\">{}</p><ul class=\"grid\" aria-label=\"{}\">",
        l.grid,
        l.grid_help,
        escape(l.grid)
    );
    for p in &reports {
        let Ok(code) = ProvinceCode::parse(&p.code) else {
            continue;
        };
        // A province with data the model cannot read says so, and still shows what it can.
        let damaged = if p.damaged_records > 0 {
            format!(
                "<span class=\"tile-damaged\" data-damaged=\"{}\">{}</span>",
                p.damaged_records, l.damaged
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<li><a class=\"tile heat-{h}\" href=\"/dashboard/province/{c}\" data-tile=\"{c}\" \
             data-activities=\"{a}\"><span class=\"tile-name\">{n}</span>\
             <span class=\"tile-count\">{count} <span class=\"unit\">{unit}</span></span>\
             {damaged}</a></li>",
            h = heat(p.activities, max),
            c = escape(&p.code),
            a = p.activities,
            n = escape(province_name(code, lang)),
            count = i18n::count(p.activities),
            unit = l.activities,
        );
    }
    out.push_str("</ul>");
    // The provinces side by side: one column each.
    let _ = write!(
        out,
        "<h3>{}</h3><div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"{}\">\
         <table class=\"side\"><thead><tr><th scope=\"col\">{}</th>",
        l.side_by_side,
        escape(l.side_by_side),
        l.province
    );
    for p in &reports {
        let Ok(code) = ProvinceCode::parse(&p.code) else {
            continue;
        };
        let _ = write!(
            out,
            "<th scope=\"col\"><a href=\"/dashboard/province/{c}\">{n}</a></th>",
            c = escape(&p.code),
            n = escape(province_name(code, lang))
        );
    }
    out.push_str("</tr></thead><tbody>");
    let rows: Vec<Vec<(String, String, i64)>> =
        reports.iter().map(|p| figure_rows(p, l, lang)).collect();
    if let Some(first) = rows.first() {
        for (index, (_, label, _)) in first.iter().enumerate() {
            let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(label));
            for (p, province_rows) in reports.iter().zip(&rows) {
                if let Some((key, _, value)) = province_rows.get(index) {
                    out.push_str(&figure_cell(&p.code, key, *value));
                }
            }
            out.push_str("</tr>");
        }
    }
    out.push_str("</tbody></table></div>");
    let details: Vec<_> = region
        .provinces
        .iter()
        .filter_map(|c| dataset.details.get(c.as_str()))
        .collect();
    let months = figures::window(current_month(ctx.now), details.iter().copied());
    let data = figures::monthly(details);
    out.push_str(&charts_over_time(
        &format!("r{index}"),
        &data,
        &months,
        ctx.locale,
        false,
    ));
    out.push_str("</section>");
    out
}

fn totals(ctx: &Context<'_>, dataset: &Dataset) -> String {
    let l = ctx.locale.labels();
    let sum = |f: &dyn Fn(&ProvinceReport) -> i64| {
        dataset
            .report
            .provinces
            .iter()
            .map(f)
            .fold(0i64, i64::saturating_add)
    };
    let cards = [
        (
            "members",
            l.members,
            sum(&|p| as_i64(p.members.values().sum())),
        ),
        (
            "leader_candidates",
            l.candidates,
            sum(&|p| as_i64(p.leader_candidates)),
        ),
        ("centres", l.centres, sum(&|p| as_i64(p.centres))),
        ("activities", l.activities, sum(&|p| as_i64(p.activities))),
        ("attendance", l.attendance, sum(&|p| p.attendance)),
        (
            "sealed_slots",
            l.sealed_slots,
            sum(&|p| as_i64(p.sealed_slots)),
        ),
    ];
    let mut out = format!(
        "<section aria-labelledby=\"totals\"><h2 id=\"totals\">{}</h2><dl class=\"cards\">",
        l.total
    );
    for (key, label, value) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><dt>{label}</dt><dd data-total=\"{key}\" data-value=\"{value}\">{}</dd></div>",
            i18n::number(value)
        );
    }
    out.push_str("</dl></section>");
    out
}

fn sync_health(ctx: &Context<'_>, devices: &[&DeviceReport]) -> String {
    let l = ctx.locale.labels();
    let lang = ctx.locale.lang;
    let mut out = format!(
        "<section aria-labelledby=\"sync\"><h2 id=\"sync\">{}</h2><p class=\"note\">{} \
         ({} {} {})</p>",
        l.sync_health,
        l.sync_help,
        l.silent,
        i18n::number(ctx.silent_days),
        match lang {
            Lang::Th => "วัน",
            Lang::En => "days",
        }
    );
    if devices.is_empty() {
        let _ = write!(out, "<p>{}</p></section>", l.no_data);
        return out;
    }
    let _ = write!(
        out,
        "<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"{}\"><table class=\"sync\">\
         <thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th>\
         <th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        escape(l.sync_health),
        l.device,
        l.role,
        l.provinces,
        l.last_sync,
        l.status
    );
    let threshold = ctx.silent_days.saturating_mul(86_400);
    for d in devices {
        let silent = !d.revoked
            && d.last_sync_unix
                .is_none_or(|at| ctx.now.saturating_sub(at) > threshold);
        let last = match d.last_sync_unix {
            Some(at) => format!(
                "{} <span class=\"ago\">({})</span>",
                i18n::moment(at, ctx.locale),
                i18n::days_ago(ctx.now.saturating_sub(at), lang)
            ),
            None => l.never.to_owned(),
        };
        let status = if d.revoked {
            l.revoked.to_owned()
        } else if silent {
            format!(
                "<strong>⚠ {} {} {}</strong>",
                l.silent,
                i18n::number(ctx.silent_days),
                match lang {
                    Lang::Th => "วัน",
                    Lang::En => "days",
                }
            )
        } else {
            l.healthy.to_owned()
        };
        let provinces = d
            .provinces
            .iter()
            .map(|c| match ProvinceCode::parse(c) {
                Ok(code) => format!("{c} {}", province_name(code, lang)),
                Err(_) => c.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "<tr class=\"{class}\" data-device=\"{id}\" data-last-sync-unix=\"{unix}\" \
             data-silent=\"{silent}\"><td><code>{id}</code></td><td>{role}</td><td>{provinces}</td>\
             <td>{last}</td><td>{status}</td></tr>",
            class = if silent { "silent" } else { "ok" },
            id = escape(&d.device),
            unix = d.last_sync_unix.map(|t| t.to_string()).unwrap_or_default(),
            role = escape(&i18n::device_role(&d.role, lang)),
            provinces = escape(&provinces),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// The overview: totals, then each region (grid, provinces side by side, charts), then sync
/// health of every device and relay.
pub fn overview(ctx: &Context<'_>, dataset: &Dataset) -> String {
    let l = ctx.locale.labels();
    let mut body = totals(ctx, dataset);
    for (index, region) in figures::regions(dataset).iter().enumerate() {
        body.push_str(&region_section(ctx, dataset, region, index));
    }
    let devices: Vec<&DeviceReport> = dataset.report.devices.iter().collect();
    body.push_str(&sync_health(ctx, &devices));
    shell(ctx, l.overview, &body)
}

/// One province: its figures, charts over time, members by role, audiences, leader candidates,
/// centres, activities and the sync health of its devices.
pub fn province(ctx: &Context<'_>, dataset: &Dataset, code: ProvinceCode) -> String {
    let l = ctx.locale.labels();
    let lang = ctx.locale.lang;
    let report = figures::province_report(dataset, code);
    let empty = Default::default();
    let detail = dataset.details.get(code.as_str()).unwrap_or(&empty);
    let heading = format!("{} {}", code.as_str(), province_name(code, lang));
    let mut body = format!("<p><a href=\"/dashboard\">← {}</a></p>", l.back);
    body.push_str(&province_figures(&report, l, lang));
    body.push_str(&province_bars(&report, l, lang));
    let months = figures::window(current_month(ctx.now), [detail]);
    body.push_str(&charts_over_time(
        "p",
        &figures::monthly([detail]),
        &months,
        ctx.locale,
        true,
    ));
    body.push_str(&province_lists(detail, l));
    body.push_str(&recent_activities(ctx, detail));
    let devices: Vec<&DeviceReport> = dataset
        .report
        .devices
        .iter()
        .filter(|d| d.provinces.iter().any(|p| p == code.as_str()))
        .collect();
    body.push_str(&sync_health(ctx, &devices));
    shell(ctx, &heading, &body)
}

/// A province's headline figures as cards, then every figure of the report in one table.
fn province_figures(report: &ProvinceReport, l: &Labels, lang: Lang) -> String {
    let mut body = String::from("<dl class=\"cards\">");
    for (key, label, value) in figure_rows(report, l, lang)
        .into_iter()
        .filter(|(key, _, _)| !key.contains('.'))
    {
        let _ = write!(
            body,
            "<div class=\"card\"><dt>{}</dt><dd data-province=\"{}\" data-figure=\"{}\" \
             data-value=\"{value}\">{}</dd></div>",
            escape(&label),
            escape(&report.code),
            escape(&key),
            i18n::number(value)
        );
    }
    // Every figure of the report, in one table.
    let _ = write!(
        body,
        "</dl><details class=\"all\"><summary>{}</summary><table class=\"fallback\"><tbody>",
        l.all_figures
    );
    for (key, label, value) in figure_rows(report, l, lang) {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th>{}</tr>",
            escape(&label),
            figure_cell(&report.code, &key, value)
        );
    }
    body.push_str("</tbody></table></details>");
    body
}

/// Members by role and audiences reached, as bar charts with their tables.
fn province_bars(report: &ProvinceReport, l: &Labels, lang: Lang) -> String {
    let mut body = String::from("<div class=\"charts\">");
    let roles: Vec<(String, i64)> = MemberRole::ALL
        .iter()
        .map(|r| {
            (
                i18n::role(*r, lang).to_owned(),
                as_i64(report.members.get(r.as_str()).copied().unwrap_or(0)),
            )
        })
        .collect();
    let audiences: Vec<(String, i64)> = Audience::ALL
        .iter()
        .map(|a| {
            (
                i18n::audience(*a, lang).to_owned(),
                as_i64(
                    report
                        .activities_by_audience
                        .get(a.as_str())
                        .copied()
                        .unwrap_or(0),
                ),
            )
        })
        .collect();
    for (id, title, items) in [
        ("roles", l.members_by_role, &roles),
        ("audiences", l.audiences_reached, &audiences),
    ] {
        let _ = write!(
            body,
            "<figure class=\"chart-box\" data-chart=\"{id}\"><figcaption>{title}</figcaption>{}\
             <details><summary>{}</summary><table class=\"fallback\"><tbody>{}</tbody></table>\
             </details></figure>",
            svg::horizontal_bars(id, title, items, l.no_data),
            l.show_table,
            items
                .iter()
                .map(|(label, value)| format!(
                    "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                    escape(label),
                    i18n::number(*value)
                ))
                .collect::<String>()
        );
    }
    body.push_str("</div>");
    body
}

/// The leader candidates and centres of a province (user text).
fn province_lists(detail: &ProvinceDetail, l: &Labels) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<div class=\"lists\"><section aria-labelledby=\"cand\"><h2 id=\"cand\">{}</h2>",
        l.candidate_list
    );
    if detail.candidates.is_empty() {
        let _ = write!(body, "<p>{}</p>", l.none);
    } else {
        body.push_str("<ul>");
        for alias in &detail.candidates {
            let _ = write!(body, "<li data-candidate>{}</li>", escape(alias));
        }
        body.push_str("</ul>");
    }
    let _ = write!(
        body,
        "</section><section aria-labelledby=\"centres\"><h2 id=\"centres\">{}</h2>",
        l.centre_list
    );
    if detail.centres.is_empty() {
        let _ = write!(body, "<p>{}</p>", l.none);
    } else {
        body.push_str("<ul>");
        for centre in &detail.centres {
            let _ = write!(
                body,
                "<li>{} <span class=\"muted\">({})</span></li>",
                escape(&centre.name),
                escape(&centre.district)
            );
        }
        body.push_str("</ul>");
    }
    body.push_str("</section></div>");
    body
}

/// Every counted activity of a province, newest first, in one table (user text).
fn recent_activities(ctx: &Context<'_>, detail: &ProvinceDetail) -> String {
    let l = ctx.locale.labels();
    let lang = ctx.locale.lang;
    let mut body = String::new();
    let _ = write!(
        body,
        "<section aria-labelledby=\"acts\"><h2 id=\"acts\">{}</h2>",
        l.recent
    );
    if detail.activities.is_empty() {
        let _ = write!(body, "<p>{}</p>", l.no_data);
    } else {
        let _ = write!(
            body,
            "<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"{}\"><table>\
             <thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th>\
             <th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead>\
             <tbody>",
            escape(l.recent),
            l.date,
            l.activity_title,
            l.kind,
            l.audiences,
            l.district,
            l.attendance
        );
        for a in &detail.activities {
            let _ = write!(
                body,
                "<tr data-activity><td>{}</td><td data-title>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                escape(&i18n::date(a.date, ctx.locale)),
                escape(&a.title),
                escape(i18n::kind(a.kind, lang)),
                escape(
                    &a.audiences
                        .iter()
                        .map(|x| i18n::audience(*x, lang))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                escape(&a.district),
                i18n::number(a.attendance)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    body
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{ActivityRow, ProvinceDetail, Report};
    use phakhi_core::model::Date;

    fn dataset() -> Dataset {
        let mut members = BTreeMap::new();
        members.insert("core_leader".to_owned(), 1200);
        let p = ProvinceReport {
            code: "TH-44".into(),
            name: "Maha Sarakham".into(),
            members,
            activities: 1,
            attendance: 35,
            sealed_slots: 2,
            ..ProvinceReport::default()
        };
        let mut detail = ProvinceDetail::default();
        detail.activities.push(ActivityRow {
            date: Date::from_ymd(2026, 11, 20).unwrap(),
            kind: ActivityKind::Meeting,
            audiences: vec![Audience::Youth],
            title: "<script>alert('x')</script> & \"ประชุม\"".into(),
            district: "<b>เมือง</b>".into(),
            attendance: 35,
        });
        detail
            .candidates
            .push("<img src=x onerror=alert(1)>".into());
        detail
            .activities_by_month
            .entry((2026, 11))
            .or_default()
            .insert("meeting".into(), 1);
        let mut details = BTreeMap::new();
        details.insert("TH-44".to_owned(), detail);
        Dataset {
            report: Report {
                provinces: vec![p],
                devices: vec![DeviceReport {
                    device: "abc123".into(),
                    role: "leader".into(),
                    provinces: vec!["TH-44".into()],
                    last_sync_unix: Some(0),
                    last_sync: Some("1970-01-01T00:00:00Z".into()),
                    last_sync_shown: String::new(),
                    revoked: false,
                }],
                damaged: vec![],
            },
            details,
            regions: vec![],
        }
    }

    fn ctx(lang: Lang) -> Context<'static> {
        Context {
            locale: Locale::new(lang),
            role: "hq",
            // 2026-11-25
            now: 1_795_564_800,
            version: "v1",
            silent_days: 7,
            path: "/dashboard",
        }
    }

    /// A province with data the model cannot read is marked damaged on the overview, and the
    /// other provinces are shown as before.
    #[test]
    fn a_damaged_province_is_marked_and_the_others_still_show() {
        let mut data = dataset();
        let mut damaged = data.report.provinces[0].clone();
        damaged.code = "TH-40".into();
        damaged.damaged_records = 1;
        data.report.provinces.insert(0, damaged);
        for lang in [Lang::Th, Lang::En] {
            let page = overview(&ctx(lang), &data);
            assert!(page.contains("data-tile=\"TH-40\""), "{page}");
            assert!(page.contains("data-tile=\"TH-44\""), "{page}");
            assert_eq!(page.matches("data-damaged=\"1\"").count(), 1, "{page}");
            assert!(page.contains(ctx(lang).locale.labels().damaged));
        }
    }

    #[test]
    fn escaping_covers_every_special_character() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("มหาสารคาม"), "มหาสารคาม");
    }

    #[test]
    fn user_text_on_the_province_page_is_escaped() {
        let code = ProvinceCode::parse("TH-44").unwrap();
        let page = province(&ctx(Lang::En), &dataset(), code);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;ประชุม&quot;"
            )
        );
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<b>เมือง</b>"));
        // The only scripts are the dashboard's own file.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"/dashboard/assets/dashboard.js\" defer></script>"));
    }

    #[test]
    fn figures_carry_stable_data_attributes() {
        let page = overview(&ctx(Lang::En), &dataset());
        assert!(page.contains(
            "data-province=\"TH-44\" data-figure=\"members.core_leader\" data-value=\"1200\">1,200<"
        ));
        assert!(
            page.contains("data-province=\"TH-44\" data-figure=\"attendance\" data-value=\"35\"")
        );
        assert!(page.contains("data-tile=\"TH-44\" data-activities=\"1\""));
        assert!(page.contains("data-version=\"v1\""));
        // Silent since 1970: highlighted.
        assert!(
            page.contains("data-device=\"abc123\" data-last-sync-unix=\"0\" data-silent=\"true\"")
        );
        assert!(page.contains("lang=\"en\""));
        assert!(page.contains("Nov 2026"));
    }

    #[test]
    fn thai_pages_use_thai_labels_and_the_buddhist_era() {
        let page = overview(&ctx(Lang::Th), &dataset());
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"th\">"));
        assert!(page.contains("ภาพรวม"));
        assert!(page.contains("พ.ย. 2569"));
        assert!(!page.contains("Nov 2026"));
        assert!(page.contains("มหาสารคาม"));
    }

    #[test]
    fn heat_levels() {
        assert_eq!(heat(0, 10), 0);
        assert_eq!(heat(1, 10), 1);
        assert_eq!(heat(10, 10), 4);
        assert_eq!(heat(5, 10), 2);
        assert_eq!(heat(3, 0), 0);
    }
}
