//! In-process authorize throughput: the decision core alone, no HTTP, no store.
//!
//! Builds in code a directory of 1,000,000 extensions over 10,000 accounts (resellers and
//! their sub-accounts, six home countries, CIDRs, limits, rules, business hours) and one
//! charging plan of 50,000 E.164 prefixes over every country code, then measures:
//!
//! - build time and resident memory of the plan and of the directory (per extension);
//! - the ledger's memory: per extension/account level after a first call on 100,000
//!   extensions, and per call held open;
//! - single-threaded `Engine::authorize` alone (a batch of N calls left open, then the N
//!   `end`s) and `authorize` + `end` cycles, from extensions chosen at random, over three
//!   workloads: a realistic mix of numbers (national, mobile, international, toll-free,
//!   premium, high-risk, internal, emergency; some from a wrong source address, some out
//!   of hours), one country's fixed and mobile numbers only, and numbers in 40 countries;
//! - in the same run, as baselines: `number::classify` alone on the same numbers and dial
//!   plans, libphonenumber's parse + type + validity alone on their E.164 forms, and the
//!   rate lookup alone, each as a share of `authorize`.
//!
//! Why three workloads: libphonenumber (the `phonenumber` crate) keeps its compiled
//! regexes in one process-wide LRU cache of 100, so the cost of `classify` depends on how
//! many numbering plans the traffic spans, far more than on anything in tollgate.
//!
//! Every figure is the median of `--runs` runs; every pass is bounded by `--ops` and
//! `--max-seconds`.
//!
//! `cargo run --release -p tollgate-bench --bin inprocess [-- --ops 20000 --runs 5]`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Parser;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use phonenumber::metadata::DATABASE;
use tollgate_bench::{grouped, median, mib, per_second, rss_bytes, Rng};
use tollgate_core::engine::{AuthorizeRequest, Decision};
use tollgate_core::ledger::{ActiveCall, LevelState};
use tollgate_core::number::{classify, ClassSet, DestinationClass, DialPlan};
use tollgate_core::policy::{
    Account, DestinationRules, Extension, ExtensionDefaults, Limit, Limits, Origin, Policy,
};
use tollgate_core::rating::{ChargingPlan, Increments, Rate};
use tollgate_core::schedule::{parse_span, Schedule};
use tollgate_core::{Currency, Engine, Money};

#[derive(Parser)]
#[command(about = "In-process authorize throughput of the tollgate decision core")]
struct Args {
    /// Extensions in the directory.
    #[arg(long, default_value_t = 1_000_000)]
    extensions: usize,
    /// Accounts (1 in 100 is a reseller; most others belong to one).
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Prefixes in the charging plan.
    #[arg(long, default_value_t = 50_000)]
    prefixes: usize,
    /// Operations per pass.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Runs of every pass; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A pass stops after this many seconds even if it has not done `--ops`.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    #[arg(long, default_value_t = 20_260_311)]
    seed: u64,
    /// Extensions that get a first call, to measure the ledger's growth.
    #[arg(long, default_value_t = 100_000)]
    ledger_extensions: usize,
    /// Time only the workloads whose name starts with this ("realistic", "home",
    /// "international"), e.g. under a profiler.
    #[arg(long)]
    only: Option<String>,
    /// Keep libphonenumber's own 100-pattern cache (the baseline before `warm_up`).
    #[arg(long)]
    small_pattern_cache: bool,
}

/// E.164 country calling codes (ITU-T), NANP's "1" expanded into area codes below.
const COUNTRY_CODES: &[u16] = &[
    7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
    56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98, 211, 212,
    213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235,
    236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254,
    255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298, 299,
    350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377, 378,
    380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504, 505, 506, 507,
    508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674, 675, 676, 677,
    678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 850, 852, 853, 855, 856,
    870, 880, 881, 882, 883, 886, 960, 961, 962, 963, 964, 965, 966, 967, 968, 970, 971, 972, 973,
    974, 975, 976, 977, 979, 992, 993, 994, 995, 996, 998,
];

/// Codes whose traffic is expensive (a share of the IRSF list): priced high in the plan.
const EXPENSIVE_CODES: &[u16] = &[
    53, 235, 239, 247, 252, 290, 674, 675, 677, 678, 682, 683, 686, 688, 690, 691, 692, 870, 881,
];

/// Blocked outright in the plan.
const BLOCKED_CODES: &[u16] = &[882, 883, 979];

/// A home country of accounts: its time zone and what its phones dial, by kind.
struct Country {
    region: &'static str,
    tz: Tz,
    weight: u32,
    national: &'static [&'static str],
    mobile: &'static [&'static str],
    toll_free: &'static [&'static str],
    premium: &'static [&'static str],
    international: &'static [&'static str],
    high_risk: &'static [&'static str],
    internal: &'static [&'static str],
    emergency: &'static [&'static str],
}

/// Dialing templates (`X` is a random digit), as phones in each country dial them.
const COUNTRIES: &[Country] = &[
    Country {
        region: "FR",
        tz: chrono_tz::Europe::Paris,
        weight: 35,
        national: &[
            "01XXXXXXXX",
            "02XXXXXXXX",
            "03XXXXXXXX",
            "04XXXXXXXX",
            "05XXXXXXXX",
            "09XXXXXXXX",
        ],
        mobile: &["06XXXXXXXX", "07XXXXXXXX"],
        toll_free: &["0800XXXXXX", "0805XXXXXX"],
        premium: &["0899XXXXXX", "0897XXXXXX"],
        international: &[
            "0044207946XXXX",
            "004930XXXXXXXX",
            "003491XXXXXXX",
            "+1212XXXXXXX",
            "0039063XXXXXXX",
            "0032XXXXXXXX",
            "+4179XXXXXXX",
            "00212XXXXXXXXX",
        ],
        high_risk: &[
            "+88216XXXXXX",
            "0053XXXXXXXX",
            "0025261XXXXXXX",
            "+1876XXXXXXX",
            "00870XXXXXXXXX",
        ],
        internal: &["1XXX", "2XX"],
        emergency: &["112", "15", "17", "18"],
    },
    Country {
        region: "US",
        tz: chrono_tz::America::New_York,
        weight: 25,
        national: &[
            "2125XXXXXX",
            "4155XXXXXX",
            "3125XXXXXX",
            "12125XXXXXX",
            "16175XXXXXX",
        ],
        mobile: &["3105XXXXXX", "17185XXXXXX", "6465XXXXXX"],
        toll_free: &["1800XXXXXXX", "1888XXXXXXX"],
        premium: &["1900XXXXXXX"],
        international: &[
            "01144207946XXXX",
            "01133142XXXXXX",
            "011491512XXXXXXX",
            "+52155XXXXXXXX",
            "+16135XXXXXX",
            "01181XXXXXXXXX",
        ],
        high_risk: &[
            "1876XXXXXXX",
            "1809XXXXXXX",
            "011882XXXXXXXX",
            "01153XXXXXXXX",
        ],
        internal: &["1XXX", "5XX"],
        emergency: &["911"],
    },
    Country {
        region: "GB",
        tz: chrono_tz::Europe::London,
        weight: 15,
        national: &["0207946XXXX", "0161496XXXX", "0113496XXXX"],
        mobile: &["07700900XXX", "07911XXXXXX", "07400XXXXXX"],
        toll_free: &["0800XXXXXXX", "0808XXXXXXX"],
        premium: &["0909XXXXXXX"],
        international: &[
            "0033142XXXXXX",
            "004930XXXXXXXX",
            "+1212XXXXXXX",
            "00353XXXXXXXXX",
        ],
        high_risk: &["070XXXXXXXX", "00882XXXXXXXX", "0053XXXXXXXX"],
        internal: &["2XXX"],
        emergency: &["112"],
    },
    Country {
        region: "DE",
        tz: chrono_tz::Europe::Berlin,
        weight: 15,
        national: &["030XXXXXXXX", "089XXXXXXXX", "040XXXXXXXX"],
        mobile: &["0151XXXXXXXX", "0171XXXXXXX", "0160XXXXXXX"],
        toll_free: &["0800XXXXXXX"],
        premium: &["09001XXXXXX"],
        international: &[
            "0033142XXXXXX",
            "0044207946XXXX",
            "+1212XXXXXXX",
            "0043XXXXXXXXX",
        ],
        high_risk: &["00882XXXXXXXX", "0053XXXXXXXX", "00881XXXXXXXXX"],
        internal: &["3XXX"],
        emergency: &["112"],
    },
    Country {
        region: "ES",
        tz: chrono_tz::Europe::Madrid,
        weight: 5,
        national: &["91XXXXXXX", "93XXXXXXX"],
        mobile: &["6XXXXXXXX"],
        toll_free: &["900XXXXXX"],
        premium: &["803XXXXXX", "806XXXXXX"],
        international: &["0033142XXXXXX", "0044207946XXXX"],
        high_risk: &["0053XXXXXXXX", "00882XXXXXXXX"],
        internal: &["1XXX"],
        emergency: &["112"],
    },
    Country {
        region: "IT",
        tz: chrono_tz::Europe::Rome,
        weight: 5,
        national: &["06XXXXXXXX", "02XXXXXXXX"],
        mobile: &["3XXXXXXXXX"],
        toll_free: &["800XXXXXX"],
        premium: &["899XXXXXX"],
        international: &["0033142XXXXXX", "0044207946XXXX", "004930XXXXXXXX"],
        high_risk: &["0053XXXXXXXX", "00882XXXXXXXX"],
        internal: &["1XXX"],
        emergency: &["112"],
    },
];

/// What kind of number a generated call dials.
#[derive(Clone, Copy)]
enum Kind {
    National,
    Mobile,
    TollFree,
    Premium,
    International,
    HighRisk,
    Internal,
    Emergency,
}

/// The realistic mix, in tenths of a percent of calls.
const CALL_MIX: &[(u32, Kind)] = &[
    (420, Kind::National),
    (260, Kind::Mobile),
    (150, Kind::International),
    (40, Kind::TollFree),
    (30, Kind::Premium),
    (60, Kind::HighRisk),
    (35, Kind::Internal),
    (5, Kind::Emergency),
];

const EMERGENCY_NUMBERS: &[&str] = &["112", "911", "15", "17", "18"];

fn money(micros: u64) -> Money {
    Money::from_micros(micros as i64)
}

fn amount(units: u64) -> Money {
    money(units * 1_000_000)
}

fn classes(list: &[DestinationClass]) -> ClassSet {
    list.iter().copied().collect()
}

/// One charging plan of `count` prefixes: every country code, NANP area codes, then
/// sub-ranges (mobile, city, premium) of 2 to 8 digits until the count is reached.
fn build_plan(count: usize, rng: &mut Rng) -> Result<ChargingPlan> {
    let increments: &[(u32, Increments)] = &[
        (30, Increments::PER_MINUTE),
        (25, Increments::PER_SECOND),
        (20, Increments { first: 30, next: 6 }),
        (15, Increments { first: 6, next: 6 }),
        (10, Increments { first: 60, next: 1 }),
    ];
    let mut plan = ChargingPlan::new("global", Currency::EUR);
    let mut seen = HashSet::with_capacity(count);
    let mut base_price: HashMap<String, u64> = HashMap::new();
    let mut add = |plan: &mut ChargingPlan,
                   prefix: String,
                   description: String,
                   price: u64,
                   rng: &mut Rng|
     -> Result<()> {
        if !seen.insert(prefix.clone()) {
            return Ok(());
        }
        let blocked = BLOCKED_CODES
            .iter()
            .any(|c| prefix.starts_with(&c.to_string()))
            || rng.below(1000) < 3;
        let fee = if rng.percent(20) {
            10_000 * (1 + rng.below(10))
        } else {
            0
        };
        let rate = Rate {
            prefix: prefix.clone(),
            description,
            price_per_minute: money(price),
            connection_fee: money(fee),
            increments: *rng.weighted(increments).unwrap_or(&Increments::PER_MINUTE),
            blocked,
        };
        if plan.rates.insert(&prefix, rate).is_err() {
            bail!("generated prefix {prefix:?} is not digits");
        }
        Ok(())
    };
    // Country codes and their base price (micros per minute).
    let mut weighted_codes: Vec<(u32, String)> = Vec::new();
    for &code in COUNTRY_CODES {
        let price = if EXPENSIVE_CODES.contains(&code) {
            1_000_000 + rng.below(2_000_000)
        } else if code < 100 {
            5_000 + rng.below(75_000)
        } else {
            50_000 + rng.below(350_000)
        };
        let prefix = code.to_string();
        base_price.insert(prefix.clone(), price);
        add(&mut plan, prefix.clone(), format!("+{code}"), price, rng)?;
        // Big markets get more sub-ranges.
        let weight = if code < 100 { 40 } else { 4 };
        weighted_codes.push((weight, prefix));
    }
    // NANP: "1" and its area codes (second digit 0-8).
    base_price.insert("1".into(), 10_000);
    add(&mut plan, "1".into(), "North America".into(), 10_000, rng)?;
    for npa in 200..1000u32 {
        if (npa / 10) % 10 == 9 {
            continue;
        }
        let prefix = format!("1{npa}");
        let price = 5_000 + rng.below(20_000);
        base_price.insert(prefix.clone(), price);
        add(&mut plan, prefix.clone(), format!("NANP {npa}"), price, rng)?;
        weighted_codes.push((2, prefix));
    }
    // Sub-ranges until the count: mobile (dearer), city (cheaper), a few premium.
    let mut attempts = 0usize;
    while plan.rates.len() < count && attempts < count * 20 {
        attempts += 1;
        let Some(root) = rng.weighted(&weighted_codes).cloned() else {
            break;
        };
        let max_extra = 8usize.saturating_sub(root.len()).max(1);
        let extra = 1 + rng.index(max_extra);
        let mut prefix = root.clone();
        for _ in 0..extra {
            prefix.push(char::from(b'0' + rng.below(10) as u8));
        }
        let base = base_price.get(&root).copied().unwrap_or(50_000);
        let (description, price) = match rng.below(10) {
            0..=3 => (
                format!("+{root} mobile"),
                base + base * rng.below(3) / 2 + 10_000,
            ),
            4..=8 => (format!("+{root} city"), base / 2 + rng.below(base / 2 + 1)),
            _ => (format!("+{root} premium"), 500_000 + rng.below(2_500_000)),
        };
        add(&mut plan, prefix, description, price, rng)?;
    }
    Ok(plan)
}

fn office_schedule(
    name: &str,
    tz: Tz,
    hours: &str,
    outside: &[DestinationClass],
) -> Result<Schedule> {
    let span = parse_span(hours).map_err(anyhow::Error::msg)?;
    let day = vec![span];
    Ok(Schedule {
        name: name.to_string(),
        time_zone: tz,
        weekly: [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ],
        holidays: Vec::new(),
        outside_hours_classes: classes(outside),
    })
}

/// What the directory generator remembers about each extension, to generate calls.
struct ExtensionInfo {
    id: String,
    country: usize,
    office: Ipv4Net,
    own: Option<Ipv4Addr>,
}

/// Accounts (resellers first) and extensions, inserted through the policy's own checks.
fn build_directory(policy: &mut Policy, args: &Args, rng: &mut Rng) -> Result<Vec<ExtensionInfo>> {
    let dial_plans: Vec<DialPlan> = COUNTRIES
        .iter()
        .map(|c| DialPlan::for_region(c.region).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let country_weights: Vec<(u32, usize)> = COUNTRIES
        .iter()
        .enumerate()
        .map(|(i, c)| (c.weight, i))
        .collect();
    let resellers = (args.accounts / 100).max(1);
    let national_only = classes(&[
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
    ]);
    let with_international = classes(&[
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::TollFree,
        DestinationClass::International,
    ]);
    let reseller_classes = classes(&[
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::TollFree,
        DestinationClass::International,
        DestinationClass::Premium,
    ]);
    let mut account_country = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        let country = *rng.weighted(&country_weights).unwrap_or(&0);
        let is_reseller = i < resellers;
        let parent =
            (!is_reseller && rng.percent(80)).then(|| format!("resl{:03}", rng.index(resellers)));
        let id = if is_reseller {
            format!("resl{i:03}")
        } else {
            format!("acct{i:05}")
        };
        let mut rules = DestinationRules::default();
        let limits = if is_reseller {
            rules.allowed_classes = Some(reseller_classes);
            Limits {
                daily: Limit::Amount(amount(100_000)),
                monthly: Limit::Amount(amount(2_000_000)),
                balance: None,
            }
        } else {
            match rng.below(10) {
                0..=4 => {}
                5..=8 => rules.allowed_classes = Some(with_international),
                _ => rules.allowed_classes = Some(reseller_classes),
            }
            if rng.percent(20) {
                rules.deny_prefixes = vec!["4470".into(), "3389".into()];
            }
            Limits {
                daily: Limit::Amount(amount(500)),
                monthly: Limit::Amount(amount(10_000)),
                // A few prepaid accounts with little left: some calls get short grants or none.
                balance: rng
                    .percent(3)
                    .then(|| money(1_000_000 + rng.below(20_000_000))),
            }
        };
        let schedule = match rng.below(100) {
            _ if is_reseller => None,
            0..=29 => Some("office".to_string()),
            30..=34 => Some("evening".to_string()),
            _ => None,
        };
        let plan = (is_reseller || parent.is_none()).then(|| "global".to_string());
        let account = Account {
            name: format!("Account {i}"),
            id: id.clone(),
            parent,
            currency: Currency::EUR,
            time_zone: COUNTRIES[country].tz,
            dial_plan: dial_plans[country].clone(),
            plan,
            limits,
            rules,
            schedule,
            suspended: false,
            shadow: false,
            extension_defaults: ExtensionDefaults::default(),
            origin: Origin::Policy,
        };
        policy
            .upsert_account(account)
            .with_context(|| format!("account {id}"))?;
        account_country.push((id, country));
    }
    let mut infos = Vec::with_capacity(args.extensions);
    let per_account = args.extensions.div_ceil(args.accounts).max(1);
    for n in 0..args.extensions {
        let a = n / per_account;
        let (account, country) = &account_country[a.min(account_country.len() - 1)];
        let id = format!("{account}-{:03}", n % per_account);
        let office = Ipv4Net::new(Ipv4Addr::new(10, (a >> 8) as u8, (a & 0xff) as u8, 0), 24)?;
        let mut allowed_cidrs = vec![IpNet::V4(office)];
        let own = rng
            .percent(30)
            .then(|| Ipv4Addr::from(0x6440_0000u32 | (n as u32 & 0x003f_ffff)));
        if let Some(own) = own {
            allowed_cidrs.push(IpNet::V4(Ipv4Net::new(own, 32)?));
        }
        if rng.percent(20) {
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, a as u16, 0, 0, 0, 0, 0);
            allowed_cidrs.push(IpNet::V6(Ipv6Net::new(v6, 48)?));
        }
        let limits = if rng.percent(90) {
            Limits {
                daily: Limit::Amount(amount(20 + rng.below(31))),
                monthly: Limit::Amount(amount(200 + rng.below(301))),
                balance: None,
            }
        } else {
            Limits {
                daily: Limit::Unlimited,
                monthly: Limit::Amount(amount(1_000)),
                balance: None,
            }
        };
        let mut rules = DestinationRules::default();
        if rng.percent(10) {
            rules.allowed_classes = Some(national_only);
        }
        let extension = Extension {
            id: id.clone(),
            account: account.clone(),
            allowed_cidrs,
            limits,
            rules,
            schedule: None,
            max_call_duration_s: if rng.percent(10) { 1800 } else { 3600 },
            max_concurrent_calls: rng.percent(80).then_some(4),
            suspended: false,
            origin: Origin::Policy,
        };
        policy
            .upsert_extension(extension)
            .with_context(|| format!("extension {id}"))?;
        infos.push(ExtensionInfo {
            id,
            country: *country,
            office,
            own,
        });
    }
    Ok(infos)
}

/// One generated call.
struct Op {
    call_id: String,
    extension: String,
    number: String,
    source_ip: IpAddr,
    /// Index into `COUNTRIES` (the dial plan `authorize` will use).
    country: usize,
    duration_s: u64,
}

/// Destinations across many countries, dialed in E.164: what a compromised extension
/// pumping traffic abroad looks like, and the widest spread of numbering plans.
const INTERNATIONAL_SPREAD: &[&str] = &[
    "+331XXXXXXXX",
    "+336XXXXXXXX",
    "+1212XXXXXXX",
    "+4420794XXXXX",
    "+447911XXXXXX",
    "+49151XXXXXXXX",
    "+4930XXXXXXXX",
    "+3491XXXXXXX",
    "+3906XXXXXXXX",
    "+5312345XXX",
    "+4179XXXXXXX",
    "+3222XXXXXX",
    "+21261XXXXXXX",
    "+52155XXXXXXXX",
    "+16135XXXXXX",
    "+8190XXXXXXXX",
    "+1876XXXXXXX",
    "+1809XXXXXXX",
    "+88216XXXXXX",
    "+25261XXXXXXX",
    "+870XXXXXXXXX",
    "+431XXXXXXXX",
    "+3531XXXXXXX",
    "+4822XXXXXXX",
    "+46812XXXXXX",
    "+4721XXXXXX",
    "+4532XXXXXX",
    "+35840XXXXXXX",
    "+35121XXXXXXX",
    "+3021XXXXXXXX",
    "+90212XXXXXXX",
    "+7495XXXXXXX",
    "+8610XXXXXXXX",
    "+9122XXXXXXXX",
    "+6221XXXXXXXX",
    "+5511XXXXXXXX",
    "+5411XXXXXXXX",
    "+2711XXXXXXX",
    "+23480XXXXXXXX",
    "+6129XXXXXXX",
];

/// Which calls a workload makes.
#[derive(Clone, Copy)]
enum Mix {
    /// Every home country, every kind of number, by `CALL_MIX`.
    Realistic,
    /// French extensions dialing French fixed and mobile numbers only.
    HomeOnly,
    /// Every extension dialing `INTERNATIONAL_SPREAD` in E.164.
    Spread,
}

fn generate_ops(
    infos: &[ExtensionInfo],
    count: usize,
    mix: Mix,
    tag: &str,
    rng: &mut Rng,
) -> Vec<Op> {
    let pool: Vec<&ExtensionInfo> = match mix {
        Mix::HomeOnly => infos
            .iter()
            .filter(|i| COUNTRIES[i.country].region == "FR")
            .collect(),
        _ => infos.iter().collect(),
    };
    (0..count)
        .filter_map(|i| {
            let info = *pool.get(rng.index(pool.len()))?;
            let country = &COUNTRIES[info.country];
            let templates = match mix {
                Mix::Spread => INTERNATIONAL_SPREAD,
                Mix::HomeOnly if rng.percent(60) => country.national,
                Mix::HomeOnly => country.mobile,
                Mix::Realistic => match rng.weighted(CALL_MIX).unwrap_or(&Kind::National) {
                    Kind::National => country.national,
                    Kind::Mobile => country.mobile,
                    Kind::TollFree => country.toll_free,
                    Kind::Premium => country.premium,
                    Kind::International => country.international,
                    Kind::HighRisk => country.high_risk,
                    Kind::Internal => country.internal,
                    Kind::Emergency => country.emergency,
                },
            };
            let template = templates
                .get(rng.index(templates.len()))
                .copied()
                .unwrap_or("112");
            let office = u32::from(info.office.network());
            let source_ip = match (rng.below(100), info.own) {
                (0..=1, _) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.below(256) as u8)),
                (2..=9, Some(own)) => IpAddr::V4(own),
                _ => IpAddr::V4(Ipv4Addr::from(office | (10 + rng.below(200) as u32))),
            };
            Some(Op {
                call_id: format!("bench-{tag}-{i:08}"),
                extension: info.id.clone(),
                number: rng.digits(template),
                source_ip,
                country: info.country,
                // A fifth unanswered; the rest up to 10 minutes.
                duration_s: if rng.percent(20) {
                    0
                } else {
                    1 + rng.below(600)
                },
            })
        })
        .collect()
}

/// A named list of calls with their E.164 digits (for the libphonenumber and rate
/// baselines).
struct Workload {
    name: &'static str,
    ops: Vec<Op>,
    e164: Vec<String>,
}

impl Workload {
    fn new(name: &'static str, ops: Vec<Op>, dial_plans: &[DialPlan], policy: &Policy) -> Workload {
        let e164 = ops
            .iter()
            .filter_map(|op| {
                classify(
                    &op.number,
                    &dial_plans[op.country],
                    &policy.emergency_numbers,
                    &policy.high_risk,
                )
                .ok()
            })
            .filter_map(|d| d.e164)
            .collect();
        Workload { name, ops, e164 }
    }
}

/// Per-op figures of one run of one workload, in ns.
#[derive(Clone, Copy, Default)]
struct RunFigures {
    authorize: f64,
    end: f64,
    cycle: f64,
    classify: f64,
    phone: f64,
    rate: f64,
}

/// One call from each of `count` extensions spread over the directory, to a fixed
/// number of its own country, from its office.
fn first_calls(infos: &[ExtensionInfo], count: usize, rng: &mut Rng) -> Vec<Op> {
    let count = count.min(infos.len()).max(1);
    let stride = (infos.len() / count).max(1);
    infos
        .iter()
        .step_by(stride)
        .take(count)
        .enumerate()
        .map(|(i, info)| {
            let country = &COUNTRIES[info.country];
            let template = country.national.first().copied().unwrap_or("112");
            Op {
                call_id: format!("bench-first-{i:08}"),
                extension: info.id.clone(),
                number: rng.digits(template),
                source_ip: IpAddr::V4(Ipv4Addr::from(u32::from(info.office.network()) | 10)),
                country: info.country,
                duration_s: 60,
            }
        })
        .collect()
}

/// Outcome counts of a pass.
#[derive(Default)]
struct Tally {
    allow: u64,
    deny: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record(
        &mut self,
        decision: &Result<
            (Decision, Option<tollgate_core::LedgerEvent>),
            tollgate_core::RequestError,
        >,
    ) {
        match decision {
            Ok((Decision::Allow(_), _)) => self.allow += 1,
            Ok((Decision::Deny(d), _)) => *self.deny.entry(d.code.as_str()).or_default() += 1,
            Err(e) => *self.errors.entry(e.to_string()).or_default() += 1,
        }
    }
}

/// A simulated clock: the core takes time as an argument.
struct Clock {
    base: DateTime<Utc>,
    ms: i64,
}

impl Clock {
    /// Moves to 10:00 UTC of the `n`-th working day after the start (skipping weekends),
    /// so daily limits start afresh and business hours stay the same from run to run.
    fn working_day(&mut self, start: DateTime<Utc>, n: usize) {
        let days = (n / 5) * 7 + n % 5;
        self.base = start + chrono::Duration::days(days as i64);
        self.ms = 0;
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.ms += 1;
        self.base + chrono::Duration::milliseconds(self.ms)
    }
}

/// Times `op` over `0..count` (stops early past `max`); returns (done, elapsed).
fn timed(count: usize, max: Duration, mut op: impl FnMut(usize)) -> (u64, Duration) {
    let start = Instant::now();
    let mut done = 0;
    for i in 0..count {
        if i % 1024 == 0 && start.elapsed() > max {
            break;
        }
        op(i);
        done += 1;
    }
    (done, start.elapsed())
}

fn ns_per_op((done, elapsed): (u64, Duration)) -> f64 {
    if done == 0 {
        0.0
    } else {
        elapsed.as_nanos() as f64 / done as f64
    }
}

/// Calls left open by a pass: the op's index and when it was authorized.
type Opened = Vec<(usize, DateTime<Utc>)>;

/// Authorizes every op (holding the allowed calls open); returns the indices allowed.
fn authorize_pass(
    engine: &mut Engine,
    ops: &[Op],
    clock: &mut Clock,
    max: Duration,
    tally: &mut Tally,
) -> (Opened, (u64, Duration)) {
    let mut open = Vec::with_capacity(ops.len());
    let timing = timed(ops.len(), max, |i| {
        let op = &ops[i];
        let now = clock.tick();
        let request = AuthorizeRequest {
            call_id: &op.call_id,
            extension: &op.extension,
            source_ip: op.source_ip,
            number: &op.number,
            pbx_ref: None,
        };
        let result = engine.authorize(&request, now);
        if matches!(result, Ok((Decision::Allow(_), _))) {
            open.push((i, now));
        }
        tally.record(&result);
        black_box(&result);
    });
    (open, timing)
}

fn end_pass(
    engine: &mut Engine,
    ops: &[Op],
    open: &[(usize, DateTime<Utc>)],
    max: Duration,
) -> (u64, Duration, u64) {
    let mut failures = 0;
    let (done, elapsed) = timed(open.len(), max, |k| {
        let (i, at) = open[k];
        let op = &ops[i];
        let result = engine.end(
            &op.call_id,
            Some(op.duration_s),
            at + chrono::Duration::seconds(op.duration_s as i64),
        );
        failures += u64::from(result.is_err());
        black_box(&result);
    });
    // Whatever a time limit left open must not leak into the next pass.
    for &(i, at) in open.iter().skip(done as usize) {
        let _ = engine.end(&ops[i].call_id, Some(0), at);
    }
    (done, elapsed, failures)
}

fn cycle_pass(
    engine: &mut Engine,
    ops: &[Op],
    clock: &mut Clock,
    max: Duration,
    tally: &mut Tally,
) -> (u64, Duration) {
    timed(ops.len(), max, |i| {
        let op = &ops[i];
        let now = clock.tick();
        let request = AuthorizeRequest {
            call_id: &op.call_id,
            extension: &op.extension,
            source_ip: op.source_ip,
            number: &op.number,
            pbx_ref: None,
        };
        let result = engine.authorize(&request, now);
        if matches!(result, Ok((Decision::Allow(_), _))) {
            let at = now + chrono::Duration::seconds(op.duration_s as i64);
            black_box(&engine.end(&op.call_id, Some(op.duration_s), at));
        }
        tally.record(&result);
        black_box(&result);
    })
}

fn print_tally(title: &str, tally: &Tally, total: u64) {
    let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
    println!("{title}");
    println!(
        "  {:<28} {:>8}  {:>5.1}%",
        "allow",
        tally.allow,
        pct(tally.allow)
    );
    for (code, n) in &tally.deny {
        println!(
            "  {:<28} {:>8}  {:>5.1}%",
            format!("deny {code}"),
            n,
            pct(*n)
        );
    }
    for (error, n) in &tally.errors {
        println!(
            "  {:<28} {:>8}  {:>5.1}%",
            format!("error: {error}"),
            n,
            pct(*n)
        );
    }
}

/// One run of every pass over a workload.
fn run_workload(
    engine: &mut Engine,
    w: &Workload,
    plan: &ChargingPlan,
    dial_plans: &[DialPlan],
    clock: &mut Clock,
    max: Duration,
    tally: &mut Tally,
) -> RunFigures {
    let ops = &w.ops;
    let n = ops.len().max(1) as f64;
    let policy = &engine.policy;
    let classify_ns = ns_per_op(timed(ops.len(), max, |i| {
        let op = &ops[i];
        black_box(classify(
            black_box(&op.number),
            &dial_plans[op.country],
            &policy.emergency_numbers,
            &policy.high_risk,
        ))
        .ok();
    }));
    // Per op of the workload (numbers without an E.164 form cost nothing here).
    let phone_ns = ns_per_op(timed(w.e164.len(), max, |i| {
        if let Ok(number) = phonenumber::parse(None, black_box(&w.e164[i])) {
            black_box(number.metadata(&DATABASE).map(|m| m.id().len()));
            black_box(number.number_type(&DATABASE));
            black_box(number.is_valid());
        }
    })) * w.e164.len() as f64
        / n;
    let rate_ns = ns_per_op(timed(w.e164.len(), max, |i| {
        black_box(plan.rate_for(black_box(w.e164[i].trim_start_matches('+'))));
    })) * w.e164.len() as f64
        / n;
    let (open, auth_timing) = authorize_pass(engine, ops, clock, max, tally);
    let (end_done, end_time, _) = end_pass(engine, ops, &open, max);
    let cycle = ns_per_op(cycle_pass(engine, ops, clock, max, tally));
    RunFigures {
        authorize: ns_per_op(auth_timing),
        end: ns_per_op((end_done, end_time)),
        cycle,
        classify: classify_ns,
        phone: phone_ns,
        rate: rate_ns,
    }
}

fn print_medians(w: &Workload, runs: &[RunFigures]) {
    let med = |f: fn(&RunFigures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    // Shares are medians of per-run ratios: each baseline against the authorize of its run.
    let share = |f: fn(&RunFigures) -> f64| {
        100.0
            * median(
                &runs
                    .iter()
                    .map(|r| f(r) / r.authorize.max(1.0))
                    .collect::<Vec<_>>(),
            )
    };
    let (auth, end, cycle) = (med(|r| r.authorize), med(|r| r.end), med(|r| r.cycle));
    println!(
        "{} ({} calls per pass; medians of {} runs; one thread)",
        w.name,
        grouped(w.ops.len() as f64),
        runs.len()
    );
    println!(
        "  authorize alone (the pass's calls held open)  {:>10.0} ns  {:>10}/s",
        auth,
        grouped(1e9 / auth.max(1.0))
    );
    println!(
        "  end alone (per allowed call)                  {:>10.0} ns  {:>10}/s",
        end,
        grouped(1e9 / end.max(1.0))
    );
    println!(
        "  authorize + end (end only when allowed)       {:>10.0} ns  {:>10} cycles/s",
        cycle,
        grouped(1e9 / cycle.max(1.0))
    );
    println!("  baselines in the same runs, share of authorize:");
    println!(
        "    number::classify alone                      {:>10.0} ns  {:>5.1}%",
        med(|r| r.classify),
        share(|r| r.classify)
    );
    println!(
        "      libphonenumber parse + type + valid alone {:>10.0} ns  {:>5.1}%",
        med(|r| r.phone),
        share(|r| r.phone)
    );
    println!(
        "    rate lookup alone (prefix trie)             {:>10.0} ns  {:>5.1}%",
        med(|r| r.rate),
        share(|r| r.rate)
    );
    println!(
        "    the rest (authorize - classify - rate)      {:>10.0} ns  {:>5.1}%",
        med(|r| r.authorize - r.classify - r.rate).max(0.0),
        share(|r| (r.authorize - r.classify - r.rate).max(0.0))
    );
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.accounts == 0 || args.extensions == 0 || args.ops == 0 || args.runs == 0 {
        bail!("--accounts, --extensions, --ops and --runs must be at least 1");
    }
    let max = Duration::from_secs(args.max_seconds);
    // As the service does at start: load libphonenumber's metadata, enlarge its pattern cache.
    if !args.small_pattern_cache {
        tollgate_core::number::warm_up();
    }
    let mut rng = Rng::new(args.seed);
    println!(
        "tollgate in-process benchmark: {} extensions, {} accounts, {} prefixes, {} calls per pass, {} runs, one thread",
        grouped(args.extensions as f64),
        grouped(args.accounts as f64),
        grouped(args.prefixes as f64),
        grouped(args.ops as f64),
        args.runs
    );
    println!();

    // ---- Build ---------------------------------------------------------------------------
    let mut policy = Policy::empty();
    policy.emergency_numbers = EMERGENCY_NUMBERS.iter().map(|s| s.to_string()).collect();
    let rss0 = rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let plan = build_plan(args.prefixes, &mut rng)?;
    let plan_time = started.elapsed();
    let plan_bytes = rss_bytes().unwrap_or(0).saturating_sub(rss0) as f64;
    let prefixes = plan.rates.len();
    policy.plans.insert(plan.name.clone(), plan);
    let paris = chrono_tz::Europe::Paris;
    let open_classes = [
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::TollFree,
    ];
    policy.schedules.insert(
        "office".into(),
        office_schedule("office", paris, "08:00-19:00", &open_classes)?,
    );
    let evening = [DestinationClass::Internal, DestinationClass::National];
    policy.schedules.insert(
        "evening".into(),
        office_schedule("evening", paris, "18:00-23:00", &evening)?,
    );
    let rss1 = rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let infos = build_directory(&mut policy, &args, &mut rng)?;
    let directory_time = started.elapsed();
    let directory_bytes = rss_bytes().unwrap_or(0).saturating_sub(rss1) as f64;
    let bookkeeping = std::mem::size_of::<ExtensionInfo>() + 16;
    let count = infos.len().max(1) as f64;
    println!("build (generation included)");
    println!(
        "  charging plan  {} prefixes in {:.2} s ({:.0} ns/prefix); RSS +{} ({:.0} B/prefix)",
        grouped(prefixes as f64),
        plan_time.as_secs_f64(),
        plan_time.as_nanos() as f64 / prefixes.max(1) as f64,
        mib(plan_bytes),
        plan_bytes / prefixes.max(1) as f64
    );
    println!(
        "  directory      {} accounts + {} extensions in {:.2} s ({:.0} ns/extension); RSS +{}",
        grouped(policy.accounts.len() as f64),
        grouped(policy.extensions.len() as f64),
        directory_time.as_secs_f64(),
        directory_time.as_nanos() as f64 / count,
        mib(directory_bytes)
    );
    println!(
        "  per extension  {:.0} B of RSS ({:.0} B without the ~{bookkeeping} B/extension the benchmark keeps to generate calls)",
        directory_bytes / count,
        directory_bytes / count - bookkeeping as f64
    );
    println!();

    let mut engine = Engine::new(policy);
    let start = Utc
        .with_ymd_and_hms(2026, 3, 9, 10, 0, 0)
        .single()
        .context("start time")?;
    let mut clock = Clock { base: start, ms: 0 };

    // ---- Ledger memory -------------------------------------------------------------------
    // Measured first, before the workloads allocate and free memory the ledger could grow
    // into unseen (RSS only grows when the allocator asks the OS for more).
    let first = first_calls(&infos, args.ledger_extensions, &mut rng);
    let first_accounts: HashSet<String> = first
        .iter()
        .filter_map(|op| engine.policy.extensions.get(&op.extension))
        .flat_map(|e| {
            engine
                .policy
                .account_chain(&e.account)
                .into_iter()
                .map(|a| a.id.clone())
        })
        .collect();
    let levels = (first.len() + first_accounts.len()).max(1) as f64;
    let before = rss_bytes().unwrap_or(0);
    let mut first_tally = Tally::default();
    let (first_done, first_time) =
        cycle_pass(&mut engine, &first, &mut clock, max, &mut first_tally);
    let grown = rss_bytes().unwrap_or(0).saturating_sub(before) as f64;
    println!("ledger memory");
    println!(
        "  a first call (authorize + end) on {} extensions ({} accounts): RSS +{}: {:.0} B per level now in the ledger",
        grouped(first_done as f64),
        grouped(first_accounts.len() as f64),
        mib(grown),
        grown / levels
    );
    println!(
        "    (a ledger entry is {} B inline plus its id's heap bytes and the map's slack; {} of those calls allowed; {} cycles/s)",
        std::mem::size_of::<(String, LevelState)>(),
        grouped(first_tally.allow as f64),
        grouped(per_second(first_done, first_time))
    );
    // The same extensions again, each call now held open.
    let before = rss_bytes().unwrap_or(0);
    let (open, _) = authorize_pass(&mut engine, &first, &mut clock, max, &mut Tally::default());
    let open_calls = engine.ledger.active_call_count();
    let held = rss_bytes().unwrap_or(0).saturating_sub(before) as f64;
    end_pass(&mut engine, &first, &open, max);
    println!(
        "  {} calls held open: RSS +{}: {:.0} B per open call ({} B inline, the rest its strings, levels and expiry entry)",
        grouped(open_calls as f64),
        mib(held),
        held / open_calls.max(1) as f64,
        std::mem::size_of::<(String, ActiveCall)>()
    );
    println!();
    drop((first, first_accounts, open));

    let dial_plans: Vec<DialPlan> = COUNTRIES
        .iter()
        .map(|c| DialPlan::for_region(c.region).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let workloads = [
        Workload::new(
            "realistic mix",
            generate_ops(&infos, args.ops, Mix::Realistic, "mix", &mut rng),
            &dial_plans,
            &engine.policy,
        ),
        Workload::new(
            "home country only (FR fixed and mobile)",
            generate_ops(&infos, args.ops, Mix::HomeOnly, "home", &mut rng),
            &dial_plans,
            &engine.policy,
        ),
        Workload::new(
            "international spread (40 destination countries)",
            generate_ops(
                &infos,
                (args.ops / 10).max(1),
                Mix::Spread,
                "spread",
                &mut rng,
            ),
            &dial_plans,
            &engine.policy,
        ),
    ];
    let mix = &workloads[0];
    let mut class_counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for op in &mix.ops {
        if let Ok(d) = classify(
            &op.number,
            &dial_plans[op.country],
            &engine.policy.emergency_numbers,
            &engine.policy.high_risk,
        ) {
            *class_counts.entry(d.class.as_str()).or_default() += 1;
        }
    }
    println!("realistic mix: numbers dialed, as classified");
    for (class, n) in &class_counts {
        println!(
            "  {:<30} {:>8}  {:>5.1}%",
            class,
            n,
            100.0 * *n as f64 / mix.ops.len().max(1) as f64
        );
    }
    println!();

    // ---- Warm-up on the realistic mix, and its decisions --------------------------------
    cycle_pass(
        &mut engine,
        &mix.ops,
        &mut clock,
        max,
        &mut Tally::default(),
    );
    let mut tally = Tally::default();
    let (open, _) = authorize_pass(&mut engine, &mix.ops, &mut clock, max, &mut tally);
    end_pass(&mut engine, &mix.ops, &open, max);
    drop(infos);
    print_tally(
        "realistic mix: decisions (second pass)",
        &tally,
        mix.ops.len() as u64,
    );
    println!();

    // ---- Timed runs ----------------------------------------------------------------------
    let plan = engine
        .policy
        .plans
        .get("global")
        .cloned()
        .context("the generated plan is missing")?;
    let mut figures: Vec<Vec<RunFigures>> = vec![Vec::new(); workloads.len()];
    println!(
        "{:<4} {:<10} {:>12} {:>9} {:>12} {:>12} {:>14} {:>8}",
        "run", "workload", "authorize", "end", "cycle", "classify", "libphonenum.", "rate"
    );
    for run in 0..args.runs {
        clock.working_day(start, run + 1);
        for (w, runs) in workloads.iter().zip(figures.iter_mut()) {
            if args
                .only
                .as_ref()
                .is_some_and(|only| !w.name.starts_with(only.as_str()))
            {
                continue;
            }
            let f = run_workload(
                &mut engine,
                w,
                &plan,
                &dial_plans,
                &mut clock,
                max,
                &mut Tally::default(),
            );
            let short = w.name.split_whitespace().next().unwrap_or("");
            println!(
                "{:<4} {:<10} {:>9.0} ns {:>6.0} ns {:>9.0} ns {:>9.0} ns {:>11.0} ns {:>5.0} ns",
                run + 1,
                short,
                f.authorize,
                f.end,
                f.cycle,
                f.classify,
                f.phone,
                f.rate
            );
            runs.push(f);
        }
    }
    println!();
    for (w, runs) in workloads
        .iter()
        .zip(&figures)
        .filter(|(_, runs)| !runs.is_empty())
    {
        print_medians(w, runs);
        println!();
    }
    Ok(())
}
