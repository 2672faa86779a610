//! The grouper and the MCE on hand-checked claims (the differential test covers breadth).

use coding::drg::{Claim, ClaimDiagnosis, HospitalStatus, Impact, Sex};
use coding::mce::{EditType, MceEdit};
use coding::{Date, ReturnCode, Severity, grouper, mce};

fn claim(pdx: &str, sdx: &[(&str, Option<&str>)], procedures: &[&str]) -> Claim {
    Claim {
        pdx: pdx.to_string(),
        sdx: sdx
            .iter()
            .map(|(code, poa)| ClaimDiagnosis {
                code: code.to_string(),
                poa: poa.map(str::to_string),
            })
            .collect(),
        procedures: procedures.iter().map(|p| p.to_string()).collect(),
        age: 70,
        sex: Sex::Female,
        discharge_status: 1,
        ..Claim::default()
    }
}

#[test]
fn a_cc_raises_heart_failure_from_293_to_292_and_the_weights_follow() {
    let plain = grouper().group(&claim("I50.20", &[("E11.65", Some("Y"))], &[]));
    assert_eq!(
        (plain.final_mdc, plain.final_drg, plain.return_code),
        (5, 293, ReturnCode::Ok)
    );
    assert_eq!(plain.final_severity, Severity::None);
    let with_cc = grouper().group(&claim(
        "I50.20",
        &[("E11.65", Some("Y")), ("N17.9", Some("Y"))],
        &[],
    ));
    assert_eq!(with_cc.final_drg, 292);
    assert_eq!(with_cc.final_severity, Severity::Cc);
    assert_eq!(with_cc.pdx.mdc, Some(5));
    assert_eq!(with_cc.pdx.drg_impact, Impact::Both);
    let n179 = with_cc
        .sdx
        .iter()
        .find(|d| d.code == "N179")
        .unwrap_or_else(|| panic!("N179"));
    assert_eq!(
        (n179.severity, n179.drg_impact),
        (Severity::Cc, Impact::Both)
    );
    assert!(
        with_cc
            .drg_title
            .starts_with("Heart Failure and Shock with CC"),
        "{}",
        with_cc.drg_title
    );
    assert!(
        with_cc
            .weight
            .is_some_and(|w| w > plain.weight.unwrap_or(f64::MAX))
    );
    assert!(with_cc.gmlos.is_some() && with_cc.amlos.is_some());
}

#[test]
fn a_hospital_acquired_condition_lowers_the_final_drg_or_makes_the_claim_ungroupable() {
    // T80.211A (vascular catheter infection, HAC 07) is a CC.
    let not_present = grouper().group(&claim("I50.20", &[("T80.211A", Some("N"))], &[]));
    assert_eq!((not_present.initial_drg, not_present.final_drg), (292, 293));
    assert_eq!(not_present.sdx[0].hacs, vec![7]);
    let present = grouper().group(&claim("I50.20", &[("T80.211A", Some("Y"))], &[]));
    assert_eq!((present.initial_drg, present.final_drg), (292, 292));
    let missing = grouper().group(&claim("I50.20", &[("T80.211A", None)], &[]));
    assert_eq!(
        (missing.initial_drg, missing.final_drg, missing.return_code),
        (292, 999, ReturnCode::HacMissingOnePoa)
    );
    let exempt = Claim {
        hospital_status: HospitalStatus::Exempt,
        ..claim("I50.20", &[("T80.211A", None)], &[])
    };
    assert_eq!(grouper().group(&exempt).final_drg, 292);
}

#[test]
fn bad_principal_diagnoses_have_their_return_codes() {
    let ecode = grouper().group(&claim("V00.01XA", &[], &[]));
    assert_eq!(
        (ecode.final_drg, ecode.final_mdc, ecode.return_code),
        (999, 0, ReturnCode::DxCannotBePdx)
    );
    let invalid = grouper().group(&claim("I50", &[], &[]));
    assert_eq!(
        (invalid.final_drg, invalid.return_code),
        (999, ReturnCode::InvalidPdx)
    );
    assert_eq!(invalid.return_code.name(), "INVALID_PDX");
    let unknown_sex = Claim {
        sex: Sex::Unknown,
        ..claim("A51.0", &[], &[])
    };
    assert_eq!(
        grouper().group(&unknown_sex).return_code,
        ReturnCode::InvalidSex
    );
}

#[test]
fn an_operating_room_procedure_makes_the_drg_surgical() {
    // Laparoscopic appendectomy for acute appendicitis.
    let result = grouper().group(&claim("K35.80", &[], &["0DTJ4ZZ"]));
    assert_eq!(result.final_mdc, 6);
    assert!(
        (397..=399).contains(&result.final_drg),
        "appendix procedure DRGs, got {}",
        result.final_drg
    );
    assert!(result.procedures[0].is_or && result.procedures[0].drg_impact == Impact::Both);
    // An unrelated OR procedure goes to 981-983.
    let unrelated = grouper().group(&claim("I50.20", &[], &["0DTJ4ZZ"]));
    assert!(
        (981..=983).contains(&unrelated.final_drg),
        "{}",
        unrelated.final_drg
    );
}

#[test]
fn the_mce_flags_the_classic_edits() {
    let on = Date::parse("2026-04-15").unwrap_or_else(|| panic!("date"));
    let edits = |c: &Claim| {
        mce()
            .edit(c, on)
            .edits
            .into_iter()
            .map(|e| e.edit)
            .collect::<Vec<_>>()
    };
    assert!(edits(&claim("I50.20", &[("E11.65", Some("Y"))], &[])).is_empty());
    assert_eq!(
        edits(&claim("V00.01XA", &[], &[])),
        vec![MceEdit::ECodeAsPdx]
    );
    assert_eq!(
        edits(&claim("D63.0", &[], &[])),
        vec![MceEdit::ManifestationAsPdx]
    );
    assert!(edits(&claim("B95.0", &[], &[])).contains(&MceEdit::UnacceptablePdx));
    assert!(edits(&claim("E11.9", &[], &[])).contains(&MceEdit::QuestionableAdmission));
    assert!(
        edits(&claim("I50.20", &[("A33", Some("Y"))], &[])).contains(&MceEdit::AgeConflict),
        "newborn code at 70"
    );
    assert!(
        edits(&claim("I50.20", &[("C58", Some("Y"))], &[])).contains(&MceEdit::AgeConflict),
        "maternity code at 70"
    );
    assert!(
        edits(&claim("I50.20", &[("I50.20", Some("Y"))], &[])).contains(&MceEdit::DuplicateOfPdx)
    );
    assert_eq!(
        edits(&claim("I50.99", &[], &[])),
        vec![MceEdit::InvalidCode]
    );
    assert!(edits(&claim("I50.20", &[], &["00F3XZZ"])).contains(&MceEdit::NonCovered));
    assert!(edits(&claim("I50.20", &[], &["02WA3QZ"])).contains(&MceEdit::LimitedCoverage));
    let result = mce().edit(&claim("V00.01XA", &[], &[]), on);
    assert_eq!(result.edit_type, EditType::Prepayment);
    assert_eq!(result.edits[0].name, "E_CODE_AS_PDX");
    let outside = Date::parse("2027-01-01").unwrap_or_else(|| panic!("date"));
    assert_eq!(
        mce().edit(&claim("I50.20", &[], &[]), outside).edit_type,
        EditType::InvalidDischargeDate
    );
}

#[test]
fn drg_impact_marks_what_the_cms_grouper_marks() {
    let impacts = |claim: &Claim| {
        let result = grouper().group(claim);
        let sdx: Vec<(String, Impact)> = result
            .sdx
            .iter()
            .map(|d| (d.code.clone(), d.drg_impact))
            .collect();
        let procedures: Vec<(String, Impact)> = result
            .procedures
            .iter()
            .map(|p| (p.code.clone(), p.drg_impact))
            .collect();
        (result.final_drg, sdx, procedures)
    };
    // Unrelated operating-room procedures (a reroute to MDC 29): the rerouting formula
    // decides, so the CC marks nothing and each procedure marks for its attribute.
    let mut unrelated = claim("D37.4", &[("S12.431K", Some("Y"))], &["0QUC4JZ", "095V8ZZ"]);
    unrelated.age = 27;
    unrelated.sex = Sex::Male;
    unrelated.discharge_status = 62;
    let (drg, sdx, procedures) = impacts(&unrelated);
    assert_eq!(drg, 982);
    assert_eq!(sdx, vec![("S12431K".to_string(), Impact::None)]);
    assert_eq!(
        procedures,
        vec![
            ("095V8ZZ".to_string(), Impact::Both),
            ("0QUC4JZ".to_string(), Impact::Both)
        ]
    );
    // HIV with a related condition and a CC: the related condition marks for its
    // attribute, so the other CC marks for the severity.
    let mut hiv = claim("B20", &[("A15.5", Some("Y")), ("T80.61XA", Some("W"))], &[]);
    hiv.age = 29;
    hiv.discharge_status = 3;
    let (drg, sdx, _) = impacts(&hiv);
    assert_eq!(drg, 975);
    assert_eq!(
        sdx,
        vec![
            ("A155".to_string(), Impact::Both),
            ("T8061XA".to_string(), Impact::Both)
        ]
    );
}
