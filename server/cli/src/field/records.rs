//! Members, centres and activities from the command line: flags become the model's typed
//! records, one `Device` edit per command, and lists print as tables with Thai text intact.

use std::collections::BTreeSet;
use std::str::FromStr;

use clap::{Args, Subcommand};
use phakhi_core::model::{
    Activity, ActivityFilter, ActivityId, ActivityKind, ActivityUpdate, Audience, CentreId, Date,
    MemberId, MemberRole, NewActivity, NewCentre, NewMember, ProvinceDoc,
};

use super::dates::{self, InputEra};
use super::{FieldError, Session};
use crate::table::{Table, one_line};
use phakhi_core::model::Era;

#[derive(Debug, Clone, Args)]
pub struct ProvinceArg {
    /// Province code, e.g. TH-44 [default: the device's home province].
    #[arg(long, value_name = "CODE")]
    pub province: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DateEraArg {
    /// Era of the dates typed: auto (a year from 2400 is BE), be or ce.
    #[arg(long, value_enum, default_value = "auto")]
    pub date_era: InputEra,
}

#[derive(Debug, Clone, Args)]
pub struct EraArg {
    /// Show dates in the Buddhist (be) or Common (ce) era.
    #[arg(long, default_value = "be", value_parser = dates::era_arg())]
    pub era: Era,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemberCommand {
    /// Add a member (known only by alias); prints the new member id.
    Add {
        #[arg(long)]
        alias: String,
        /// core-leader, member or leader-candidate.
        #[arg(long, default_value = "member")]
        role: String,
        /// The member's coordination centre (id from `centre list`).
        #[arg(long, value_name = "ID")]
        centre: Option<String>,
        /// When the member joined [default: today].
        #[arg(long, value_name = "DATE")]
        joined: Option<String>,
        #[command(flatten)]
        date_era: DateEraArg,
        #[command(flatten)]
        province: ProvinceArg,
    },
    /// List members.
    List {
        /// Include archived members.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        era: EraArg,
        #[command(flatten)]
        province: ProvinceArg,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum CentreCommand {
    /// Add a coordination centre; prints the new centre id.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        district: String,
        /// When it was set up [default: today].
        #[arg(long, value_name = "DATE")]
        established: Option<String>,
        #[command(flatten)]
        date_era: DateEraArg,
        #[command(flatten)]
        province: ProvinceArg,
    },
    /// List coordination centres.
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        era: EraArg,
        #[command(flatten)]
        province: ProvinceArg,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ActivityCommand {
    /// Record an activity; prints its id.
    Add(ActivityAdd),
    /// Change an activity's fields or add to its attendance.
    Update(ActivityUpdateArgs),
    /// List activities, filtered.
    List(ActivityList),
}

#[derive(Debug, Clone, Args)]
pub struct ActivityAdd {
    /// campaign, knowledge-dissemination, awareness-training, meeting or other.
    #[arg(long)]
    pub kind: String,
    /// public, youth, private-sector, officials (repeat or separate with commas).
    #[arg(long = "audience", value_delimiter = ',', required = true)]
    pub audiences: Vec<String>,
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// YYYY-MM-DD, CE (2026-11-20) or BE (2569-11-20).
    #[arg(long)]
    pub date: String,
    #[arg(long)]
    pub district: String,
    #[arg(long, default_value_t = 0)]
    pub attendance: i64,
    /// The organising member: id or alias.
    #[arg(long)]
    pub organiser: String,
    /// The coordination centre (id from `centre list`).
    #[arg(long, value_name = "ID")]
    pub centre: Option<String>,
    #[command(flatten)]
    pub date_era: DateEraArg,
    #[command(flatten)]
    pub province: ProvinceArg,
}

#[derive(Debug, Clone, Args)]
pub struct ActivityUpdateArgs {
    /// The activity id from `activity list`.
    pub id: String,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long = "audience", value_delimiter = ',')]
    pub audiences: Option<Vec<String>>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A new date in the same year.
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long)]
    pub district: Option<String>,
    #[arg(long)]
    pub organiser: Option<String>,
    #[arg(long, value_name = "ID")]
    pub centre: Option<String>,
    /// Add this many people to the attendance (counts from several devices add up).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub add_attendance: Option<i64>,
    #[command(flatten)]
    pub date_era: DateEraArg,
    #[command(flatten)]
    pub province: ProvinceArg,
}

#[derive(Debug, Clone, Args)]
pub struct ActivityList {
    /// Earliest date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Latest date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub audience: Option<String>,
    #[arg(long)]
    pub district: Option<String>,
    /// Centre id.
    #[arg(long, value_name = "ID")]
    pub centre: Option<String>,
    /// Include archived activities.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub date_era: DateEraArg,
    #[command(flatten)]
    pub era: EraArg,
    #[command(flatten)]
    pub province: ProvinceArg,
}

/// Parses a tag of the model, accepting `-` for `_`.
fn tag<T: FromStr>(text: &str, what: &str, all: &[&str]) -> Result<T, FieldError> {
    text.trim().replace('-', "_").parse::<T>().map_err(|_| {
        FieldError::input(format!(
            "{text:?} is not a {what}; use one of: {}",
            all.iter()
                .map(|t| t.replace('_', "-"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn kind(text: &str) -> Result<ActivityKind, FieldError> {
    let all: Vec<&str> = ActivityKind::ALL.iter().map(|k| k.as_str()).collect();
    tag(text, "activity kind", &all)
}

fn audience(text: &str) -> Result<Audience, FieldError> {
    let all: Vec<&str> = Audience::ALL.iter().map(|k| k.as_str()).collect();
    tag(text, "audience", &all)
}

fn audiences(texts: &[String]) -> Result<BTreeSet<Audience>, FieldError> {
    texts.iter().map(|t| audience(t)).collect()
}

fn role(text: &str) -> Result<MemberRole, FieldError> {
    let all: Vec<&str> = MemberRole::ALL.iter().map(|k| k.as_str()).collect();
    tag(text, "member role", &all)
}

fn date(text: &str, era: InputEra) -> Result<Date, FieldError> {
    dates::parse(text, era).map_err(FieldError::Input)
}

fn today(session: &Session) -> Result<Date, FieldError> {
    Date::from_time(session.now.date())
        .map_err(|e| FieldError::input(format!("this computer's clock is off: {e}")))
}

fn centre_id(text: &str) -> Result<CentreId, FieldError> {
    text.parse().map_err(|_| {
        FieldError::input(format!(
            "{text:?} is not a centre id; see `centre list` for the ids"
        ))
    })
}

/// A member by id or by (unique) alias.
fn member_ref(province: &ProvinceDoc, text: &str) -> Result<MemberId, FieldError> {
    if let Ok(id) = text.parse::<MemberId>() {
        return Ok(id);
    }
    let found: Vec<MemberId> = province
        .members(false)
        .into_iter()
        .filter(|m| m.alias == text)
        .map(|m| m.id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(FieldError::input(format!(
            "no member has the alias {text:?}; add one with `member add --alias ...` or give a \
             member id from `member list`"
        ))),
        _ => Err(FieldError::input(format!(
            "several members have the alias {text:?}; give the member id from `member list`"
        ))),
    }
}

pub(super) fn member(session: &mut Session, command: MemberCommand) -> Result<(), FieldError> {
    match command {
        MemberCommand::Add {
            alias,
            role: role_text,
            centre,
            joined,
            date_era,
            province,
        } => {
            let code = session.province(province.province.as_deref())?;
            let new = NewMember {
                alias,
                role: role(&role_text)?,
                centre: centre.as_deref().map(centre_id).transpose()?,
                joined: match joined {
                    Some(d) => date(&d, date_era.date_era)?,
                    None => today(session)?,
                },
            };
            let edit = session.edit("add member");
            let id = session
                .device
                .edit_province(code, &mut session.rng, |p, rng| {
                    let mut rng = rng;
                    p.add_member(new, &edit, &mut rng)
                })?;
            println!("{id}");
        }
        MemberCommand::List { all, era, province } => {
            let code = session.province(province.province.as_deref())?;
            let text = session.device.province(code, &mut session.rng, |p| {
                let mut table = Table::new(["ID", "ALIAS", "ROLE", "STATUS", "CENTRE", "JOINED"]);
                for m in p.members(all) {
                    let centre = m
                        .centre
                        .and_then(|c| p.centre(c).ok())
                        .map_or_else(String::new, |c| c.name);
                    table.row([
                        m.id.to_string(),
                        m.alias,
                        m.role.as_str().replace('_', "-"),
                        m.status.as_str().to_owned(),
                        centre,
                        m.joined.iso_in(era.era),
                    ]);
                }
                table
            })?;
            print_table(&text, "no members recorded yet: add one with `member add`");
        }
    }
    Ok(())
}

pub(super) fn centre(session: &mut Session, command: CentreCommand) -> Result<(), FieldError> {
    match command {
        CentreCommand::Add {
            name,
            district,
            established,
            date_era,
            province,
        } => {
            let code = session.province(province.province.as_deref())?;
            let new = NewCentre {
                name,
                district,
                established: match established {
                    Some(d) => date(&d, date_era.date_era)?,
                    None => today(session)?,
                },
            };
            let edit = session.edit("add centre");
            let id = session
                .device
                .edit_province(code, &mut session.rng, |p, rng| {
                    let mut rng = rng;
                    p.add_centre(new, &edit, &mut rng)
                })?;
            println!("{id}");
        }
        CentreCommand::List { all, era, province } => {
            let code = session.province(province.province.as_deref())?;
            let table = session.device.province(code, &mut session.rng, |p| {
                let mut table = Table::new(["ID", "NAME", "DISTRICT", "ESTABLISHED", "ARCHIVED"]);
                for c in p.centres(all) {
                    table.row([
                        c.id.to_string(),
                        c.name,
                        c.district,
                        c.established.iso_in(era.era),
                        if c.archived { "yes" } else { "" }.to_owned(),
                    ]);
                }
                table
            })?;
            print_table(&table, "no centres recorded yet: add one with `centre add`");
        }
    }
    Ok(())
}

pub(super) fn activity(session: &mut Session, command: ActivityCommand) -> Result<(), FieldError> {
    match command {
        ActivityCommand::Add(a) => {
            let code = session.province(a.province.province.as_deref())?;
            let kind = kind(&a.kind)?;
            let audiences = audiences(&a.audiences)?;
            let date = date(&a.date, a.date_era.date_era)?;
            let centre = a.centre.as_deref().map(centre_id).transpose()?;
            let organiser = session
                .device
                .province(code, &mut session.rng, |p| member_ref(p, &a.organiser))??;
            let new = NewActivity {
                kind,
                audiences,
                title: a.title,
                description: a.description,
                date,
                district: a.district,
                attendance: a.attendance,
                organiser,
                centre,
            };
            let edit = session.edit("record activity");
            let id = session
                .device
                .edit_activities(code, &mut session.rng, |acts, p, rng| {
                    let mut rng = rng;
                    acts.create(p, new, &edit, &mut rng)
                })?;
            println!("{id}");
        }
        ActivityCommand::Update(u) => {
            let code = session.province(u.province.province.as_deref())?;
            let id: ActivityId = u.id.parse().map_err(|_| {
                FieldError::input(format!(
                    "{:?} is not an activity id; see `activity list` for the ids",
                    u.id
                ))
            })?;
            let organiser = match &u.organiser {
                Some(text) => Some(
                    session
                        .device
                        .province(code, &mut session.rng, |p| member_ref(p, text))??,
                ),
                None => None,
            };
            let update = ActivityUpdate {
                kind: u.kind.as_deref().map(kind).transpose()?,
                audiences: u.audiences.as_deref().map(audiences).transpose()?,
                title: u.title,
                description: u.description,
                date: u
                    .date
                    .as_deref()
                    .map(|d| date(d, u.date_era.date_era))
                    .transpose()?,
                district: u.district,
                organiser,
                centre: u.centre.as_deref().map(centre_id).transpose()?.map(Some),
            };
            let delta = u.add_attendance;
            let edit = session.edit("update activity");
            session
                .device
                .edit_activities(code, &mut session.rng, |acts, p, _| {
                    acts.update(p, id, update, &edit)?;
                    if let Some(delta) = delta {
                        acts.add_attendance(id, delta, &edit)?;
                    }
                    Ok(())
                })?;
            println!("updated {id}");
        }
        ActivityCommand::List(l) => {
            let code = session.province(l.province.province.as_deref())?;
            let era = l.date_era.date_era;
            let filter = ActivityFilter {
                from: l.from.as_deref().map(|d| date(d, era)).transpose()?,
                to: l.to.as_deref().map(|d| date(d, era)).transpose()?,
                kind: l.kind.as_deref().map(kind).transpose()?,
                audience: l.audience.as_deref().map(audience).transpose()?,
                district: l.district,
                centre: l.centre.as_deref().map(centre_id).transpose()?,
                organiser: None,
                include_archived: l.all,
            };
            let show = l.era.era;
            let table = session
                .device
                .activities(code, &mut session.rng, |acts, p| {
                    acts.list(&filter)
                        .map(|list| activity_table(&list, p, show))
                })?
                .map_err(|e| FieldError::input(e.to_string()))?;
            print_table(&table, "no activities match");
        }
    }
    Ok(())
}

fn activity_table(list: &[Activity], province: &ProvinceDoc, era: Era) -> Table {
    let mut table = Table::new([
        "ID",
        "DATE",
        "KIND",
        "AUDIENCE",
        "TITLE",
        "DISTRICT",
        "ATTENDANCE",
        "ORGANISER",
        "CENTRE",
    ]);
    for a in list {
        let organiser = province
            .member(a.organiser)
            .map_or_else(|_| a.organiser.to_string(), |m| m.alias);
        let centre = a
            .centre
            .and_then(|c| province.centre(c).ok())
            .map_or_else(String::new, |c| c.name);
        table.row([
            a.id.to_string(),
            a.date.iso_in(era),
            a.kind.as_str().replace('_', "-"),
            a.audiences
                .iter()
                .map(|x| x.as_str().replace('_', "-"))
                .collect::<Vec<_>>()
                .join(","),
            one_line(&a.title, 60),
            a.district.clone(),
            a.attendance.to_string(),
            organiser,
            centre,
        ]);
    }
    table
}

fn print_table(table: &Table, empty: &str) {
    if table.is_empty() {
        println!("{empty}");
    } else {
        print!("{}", table.render());
    }
}
