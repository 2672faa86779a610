//! The MS-DRG v43.1 definition tables, from `data/coding/drg-*`: formulas per MDC, the
//! attributes, MDC and severity of each diagnosis, the attributes of each procedure, CC
//! exclusions, procedure clusters, sex-specific MDCs, HAC formulas, titles and weights.

use std::collections::HashMap;

use super::formula::{self, Atoms, Expr};
use super::{ReturnCode, Severity};
use crate::table::{self, embedded};

/// One DRG formula.
pub struct Formula {
    pub drg: u16,
    pub reroute_mdc: u8,
    pub expr: Expr,
    /// Secondary diagnoses with one of these attributes do not count for severity.
    pub suppression: Vec<u32>,
    /// Attribute names the formula writes with an explicit `ANY:` scope: the grouper's
    /// marking passes them over (they mark no code).
    pub any_scoped: Vec<u32>,
    /// For the MDC 0 formulas that stop grouping (invalid PDX, E-code PDX, ...).
    pub error: Option<ReturnCode>,
}

pub struct Diagnosis {
    pub mdc: u8,
    pub severity: Severity,
    /// Attribute name numbers: operands, HAC operands, diagnosis categories.
    pub attributes: Vec<u32>,
    pub hac_attributes: Vec<u32>,
    pub category_attributes: Vec<u32>,
    /// CC-exclusion group when this code is the principal diagnosis (0: none).
    pub exclusion_group: u32,
}

pub struct Procedure {
    pub attributes: Vec<u32>,
}

pub struct Cluster {
    pub name: String,
    pub suppressed_mdcs: u32,
    pub choices: Vec<Vec<String>>,
}

pub struct Weight {
    pub weight: f64,
    pub gmlos: f64,
    pub amlos: f64,
}

pub struct Tables {
    pub atoms: Atoms,
    /// Formulas per MDC (index 0-99), in evaluation order.
    pub formulas: Vec<Vec<Formula>>,
    pub diagnoses: HashMap<String, Diagnosis>,
    pub procedures: HashMap<String, Procedure>,
    /// Per exclusion group, the excluded secondary diagnoses, sorted.
    pub exclusions: HashMap<u32, Vec<String>>,
    pub clusters: HashMap<u16, Cluster>,
    pub cluster_map: HashMap<String, Vec<u16>>,
    /// Code -> (MDC when male, MDC when female); `None` is a sex conflict.
    pub sex_mdc: HashMap<String, (Option<u8>, Option<u8>)>,
    /// HAC number -> (title, formulas).
    pub hacs: Vec<(u8, String, Vec<Expr>)>,
    pub drg_titles: HashMap<u16, String>,
    pub mdc_titles: HashMap<u8, String>,
    pub weights: HashMap<u16, Weight>,
    /// Attribute name numbers used by the grouper's own rules.
    pub names: Names,
}

/// Name numbers of the attributes the grouper's code (not its formulas) looks at.
pub struct Names {
    pub mccalive: u32,
    pub mccalive_upper: u32,
    pub ecode: u32,
    pub incident: u32,
    pub hac06_show: u32,
    pub d468: u32,
    pub d477: u32,
    pub orproc: u32,
    pub nordrugstent: u32,
    pub norstent: u32,
    pub invalid_pdx: u32,
    pub pdx_ecode: u32,
    pub invalid_sex: u32,
    pub invalid_dstat: u32,
    pub alive: u32,
    pub ama: u32,
    pub died: u32,
    pub xfrnba: u32,
    pub anydx: u32,
    pub multst: u32,
    pub mdc20_fall_thru: u32,
    pub bilateral: u32,
    pub four_non_drug_eluting_stents: u32,
    pub four_drug_eluting_stents: u32,
    pub four_vessels: u32,
    pub four_stents: u32,
    pub multfuse: u32,
    pub sglantsectxctr: u32,
    pub sglpostfusectr: u32,
    pub singlefusionctr: u32,
    pub sglantctr: u32,
    pub sglpost1ctr: u32,
}

fn names(atoms: &mut Atoms) -> Names {
    let mut n = |s: &str| atoms.name(s);
    Names {
        mccalive: n("mccalive"),
        mccalive_upper: n("MCCALIVE"),
        ecode: n("ecode"),
        incident: n("incident"),
        hac06_show: n("hac06_show"),
        d468: n("d468"),
        d477: n("d477"),
        orproc: n("ORPROC"),
        nordrugstent: n("NORdrugstent"),
        norstent: n("NORstent"),
        invalid_pdx: n("INVALID_PDX"),
        pdx_ecode: n("PDX_ECODE"),
        invalid_sex: n("INVALID_SEX"),
        invalid_dstat: n("INVALID_DSTAT"),
        alive: n("ALIVE"),
        ama: n("AMA"),
        died: n("DIED"),
        xfrnba: n("XFRNBA"),
        anydx: n("ANYDX"),
        multst: n("MULTST"),
        mdc20_fall_thru: n("MDC_20_FALL_THRU"),
        bilateral: n("BILATERAL"),
        four_non_drug_eluting_stents: n("FOUR_NON_DRUG_ELUTING_STENTS"),
        four_drug_eluting_stents: n("FOUR_DRUG_ELUTING_STENTS"),
        four_vessels: n("FOUR_VESSELS"),
        four_stents: n("FOUR_STENTS"),
        multfuse: n("MULTFUSE"),
        sglantsectxctr: n("SGLANTSECTXCTR"),
        sglpostfusectr: n("SGLPOSTFUSECTR"),
        singlefusionctr: n("SINGLEFUSIONCTR"),
        sglantctr: n("SGLANTCTR"),
        sglpost1ctr: n("SGLPOST1CTR"),
    }
}

fn name_list(atoms: &mut Atoms, cell: &str) -> Vec<u32> {
    let mut list: Vec<u32> = cell.split_whitespace().map(|n| atoms.name(n)).collect();
    list.sort_unstable();
    list.dedup();
    list
}

fn parse_formula(name: &str, text: &str, atoms: &mut Atoms) -> Expr {
    match formula::parse(text, atoms) {
        Ok(expr) => expr,
        Err(error) => panic!("data/coding/{name}: {error}"),
    }
}

impl Tables {
    pub fn load() -> Tables {
        let mut atoms = Atoms::default();
        let names = names(&mut atoms);

        let (name, bytes) = embedded!("drg-formulas.tsv");
        let text = table::text(name, bytes);
        let mut formulas: Vec<Vec<Formula>> = (0..100).map(|_| Vec::new()).collect();
        for cells in table::rows(name, &text, 8) {
            let mdc: usize = table::number(name, cells[0]);
            let drg: u16 = table::number(name, cells[3]);
            let reroute_mdc: u8 = table::number(name, cells[5]);
            let expr = parse_formula(name, cells[7], &mut atoms);
            let suppression = name_list(&mut atoms, cells.get(8).copied().unwrap_or(""));
            let any_scoped = cells[7]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter_map(|token| token.strip_prefix("ANY:"))
                .map(|token| atoms.name(token))
                .collect();
            let error = (mdc == 0 && drg == 0 && reroute_mdc == 0)
                .then(|| {
                    let text = cells[7];
                    if text.contains("INVALID_DSTAT") {
                        Some(ReturnCode::InvalidDischargeStatus)
                    } else if text.contains("INVALID_PDX") {
                        Some(ReturnCode::InvalidPdx)
                    } else if text.contains("PDX_ECODE") {
                        Some(ReturnCode::DxCannotBePdx)
                    } else if text.contains("INVALID_SEX") {
                        Some(ReturnCode::InvalidSex)
                    } else {
                        None
                    }
                })
                .flatten();
            let Some(list) = formulas.get_mut(mdc) else {
                panic!("data/coding/{name}: MDC {mdc}")
            };
            list.push(Formula {
                drg,
                reroute_mdc,
                expr,
                suppression,
                any_scoped,
                error,
            });
        }

        let (name, bytes) = embedded!("drg-dx.tsv.gz");
        let text = table::text(name, bytes);
        let mut diagnoses = HashMap::new();
        for cells in table::rows(name, &text, 7) {
            let severity = match cells[2] {
                "MCC" => Severity::Mcc,
                "CC" => Severity::Cc,
                _ => Severity::None,
            };
            diagnoses.insert(
                cells[0].to_string(),
                Diagnosis {
                    mdc: table::number(name, cells[1]),
                    severity,
                    attributes: name_list(&mut atoms, cells[3]),
                    hac_attributes: name_list(&mut atoms, cells[4]),
                    category_attributes: name_list(&mut atoms, cells[5]),
                    exclusion_group: table::number(name, cells[6]),
                },
            );
        }

        let (name, bytes) = embedded!("drg-pr.tsv.gz");
        let text = table::text(name, bytes);
        let mut procedures = HashMap::new();
        for cells in table::rows(name, &text, 2) {
            let attributes = cells[1].split_whitespace().map(|n| atoms.name(n)).collect();
            procedures.insert(cells[0].to_string(), Procedure { attributes });
        }

        let (name, bytes) = embedded!("drg-cc-exclusions.tsv.gz");
        let text = table::text(name, bytes);
        let mut exclusions = HashMap::new();
        for cells in table::rows(name, &text, 2) {
            let mut codes: Vec<String> = cells[1].split_whitespace().map(str::to_string).collect();
            codes.sort_unstable();
            exclusions.insert(table::number(name, cells[0]), codes);
        }

        let (name, bytes) = embedded!("drg-clusters.tsv.gz");
        let text = table::text(name, bytes);
        let mut clusters = HashMap::new();
        for cells in table::rows(name, &text, 6) {
            let suppressed_mdcs = cells[2]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(|m| table::number::<u32>(name, m))
                .filter(|m| *m < 32)
                .fold(0u32, |bits, m| bits | (1 << m));
            let choices = cells[5]
                .split(" | ")
                .map(|c| c.split_whitespace().map(str::to_string).collect())
                .collect();
            clusters.insert(
                table::number(name, cells[0]),
                Cluster {
                    name: cells[1].to_string(),
                    suppressed_mdcs,
                    choices,
                },
            );
        }
        let (name, bytes) = embedded!("drg-cluster-map.tsv.gz");
        let text = table::text(name, bytes);
        let mut cluster_map = HashMap::new();
        for cells in table::rows(name, &text, 2) {
            cluster_map.insert(
                cells[0].to_string(),
                cells[1]
                    .split_whitespace()
                    .map(|c| table::number(name, c))
                    .collect(),
            );
        }

        let (name, bytes) = embedded!("drg-sex-mdc.tsv");
        let text = table::text(name, bytes);
        let mut sex_mdc = HashMap::new();
        for cells in table::rows(name, &text, 3) {
            let mdc = |cell: &str| u8::try_from(table::number::<i32>(name, cell)).ok();
            sex_mdc.insert(cells[0].to_string(), (mdc(cells[1]), mdc(cells[2])));
        }

        let (name, bytes) = embedded!("drg-hac.tsv");
        let text = table::text(name, bytes);
        let mut hacs: Vec<(u8, String, Vec<Expr>)> = Vec::new();
        for cells in table::rows(name, &text, 3) {
            let number: u8 = table::number(name, cells[0]);
            let expr = parse_formula(name, cells[2], &mut atoms);
            match hacs.iter_mut().find(|h| h.0 == number) {
                Some(hac) => hac.2.push(expr),
                None => hacs.push((number, cells[1].to_string(), vec![expr])),
            }
        }

        let (name, bytes) = embedded!("drg-titles.tsv");
        let text = table::text(name, bytes);
        let mut drg_titles = HashMap::new();
        let mut mdc_titles = HashMap::new();
        for cells in table::rows(name, &text, 3) {
            match cells[0] {
                "drg" => drg_titles.insert(table::number(name, cells[1]), cells[2].to_string()),
                _ => mdc_titles.insert(table::number(name, cells[1]), cells[2].to_string()),
            };
        }

        let (name, bytes) = embedded!("drg-weights.tsv");
        let text = table::text(name, bytes);
        let mut weights = HashMap::new();
        for cells in table::rows(name, &text, 8) {
            // DRGs 998 and 999 have no weight (".").
            let (Ok(weight), Ok(gmlos), Ok(amlos)) =
                (cells[5].parse(), cells[6].parse(), cells[7].parse())
            else {
                continue;
            };
            weights.insert(
                table::number(name, cells[0]),
                Weight {
                    weight,
                    gmlos,
                    amlos,
                },
            );
        }

        Tables {
            atoms,
            formulas,
            diagnoses,
            procedures,
            exclusions,
            clusters,
            cluster_map,
            sex_mdc,
            hacs,
            drg_titles,
            mdc_titles,
            weights,
            names,
        }
    }
}
