//! ICD-10-CM and ICD-10-PCS through the public API: validity for a date of service,
//! headers versus billable codes, the hierarchy, notes and 7th characters, Excludes1
//! conflicts, PCS axes, and search ranking.

use coding::icd10cm::{CmKind, NoteKind};
use coding::{Date, icd10cm, icd10pcs};

fn date(text: &str) -> Date {
    Date::parse(text).unwrap_or_else(|| panic!("bad date {text}"))
}

#[test]
fn billable_codes_are_valid_in_fy2026_and_headers_never_are() {
    let cm = icd10cm();
    assert!(cm.is_valid("I50.21", date("2026-04-01")));
    assert!(cm.is_valid("i5021", date("2025-10-01")));
    let header = cm.lookup("I50.2").unwrap_or_else(|| panic!("I50.2"));
    assert_eq!(header.kind(), CmKind::Header);
    assert!(!header.is_billable());
    assert!(
        !cm.is_valid("I50.2", date("2026-04-01")),
        "a header is not valid on a claim"
    );
    assert!(!cm.is_valid("I50", date("2026-04-01")));
    assert!(!cm.is_valid("I50.99", date("2026-04-01")), "no such code");
    // The tables cover FY2026 only.
    assert!(!cm.is_valid("I50.21", date("2025-09-30")));
    assert!(!cm.is_valid("I50.21", date("2026-10-01")));
    // A procedure code added on April 1, 2026 is valid from that day, not before.
    let pcs = icd10pcs();
    let april = pcs.search("XW0", 5000).into_iter().find(|h| {
        pcs.lookup(&h.code)
            .is_some_and(|c| c.valid_dates().0 == date("2026-04-01"))
    });
    let Some(april) = april else {
        panic!("the April 2026 update adds New Technology codes")
    };
    assert!(pcs.is_valid(&april.code, date("2026-04-01")));
    assert!(!pcs.is_valid(&april.code, date("2026-03-31")));
}

#[test]
fn hierarchy_runs_from_code_to_category_block_and_chapter() {
    let cm = icd10cm();
    let code = cm.lookup("I50.21").unwrap_or_else(|| panic!("I50.21"));
    assert_eq!(code.display(), "I50.21");
    assert_eq!(
        code.description(),
        "Acute systolic (congestive) heart failure"
    );
    assert_eq!(
        code.parent().map(|p| p.display()),
        Some("I50.2".to_string())
    );
    assert_eq!(code.category().map(|c| c.code()), Some("I50"));
    assert_eq!(code.block().map(|b| b.code()), Some("I30-I5A"));
    assert_eq!(code.chapter().map(|c| c.code()), Some("9"));
    let children: Vec<&str> = cm
        .lookup("I50.2")
        .map(|c| c.children().map(|c| c.code()).collect())
        .unwrap_or_default();
    assert_eq!(children, vec!["I5020", "I5021", "I5022", "I5023"]);
    assert_eq!(cm.chapters().count(), 22);
}

#[test]
fn seventh_characters_and_notes_are_inherited_from_the_category() {
    let cm = icd10cm();
    let concussion = cm.lookup("S06.0X0A").unwrap_or_else(|| panic!("S06.0X0A"));
    assert!(concussion.is_billable());
    assert!(
        concussion.description().ends_with(", initial encounter"),
        "{}",
        concussion.description()
    );
    let header = cm.lookup("S06.0X0").unwrap_or_else(|| panic!("S06.0X0"));
    assert!(
        !header.is_billable(),
        "a code that needs a 7th character is a header"
    );
    let sevenths: Vec<char> = header
        .seventh_characters()
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert!(
        sevenths.contains(&'A') && sevenths.contains(&'S'),
        "{sevenths:?}"
    );
    // I50 holds "Code first ... heart failure complicating abortion" style notes.
    let code_first = cm
        .lookup("I50.21")
        .map(|c| c.applicable_notes(NoteKind::CodeFirst))
        .unwrap_or_default();
    assert!(
        code_first.iter().any(|(holder, _)| holder.code() == "I50"),
        "{:?}",
        code_first.len()
    );
    let excludes2 = cm
        .lookup("I50.21")
        .map(|c| c.applicable_notes(NoteKind::Excludes2))
        .unwrap_or_default();
    assert!(
        excludes2
            .iter()
            .any(|(_, note)| note.text.contains("cardiac arrest")),
        "{}",
        excludes2.len()
    );
    let use_additional = cm
        .lookup("E11.9")
        .map(|c| c.applicable_notes(NoteKind::UseAdditionalCode))
        .unwrap_or_default();
    assert!(
        !use_additional.is_empty(),
        "E11 asks for additional codes (insulin use, ...)"
    );
}

#[test]
fn excludes1_notes_forbid_pairs_of_codes() {
    let cm = icd10cm();
    // E10 (type 1 diabetes) Excludes1 type 2 diabetes mellitus (E11.-).
    let conflicts = cm.excludes1_conflicts(&["E10.9", "E11.9"]);
    assert!(
        conflicts
            .iter()
            .any(|c| c.code == "E10.9" && c.excluded == "E11.9"),
        "{conflicts:?}"
    );
    // Heart failure with a type 2 diabetes code: no Excludes1 between them.
    assert!(cm.excludes1_conflicts(&["I50.21", "E11.9"]).is_empty());
}

#[test]
fn search_expands_abbreviations_and_ranks_the_specific_codes_first() {
    let cm = icd10cm();
    let top: Vec<String> = cm
        .search("chf", 10)
        .into_iter()
        .map(|h| h.display)
        .collect();
    assert!(
        top.iter()
            .take(10)
            .filter(|c| c.starts_with("I50.2"))
            .count()
            >= 3,
        "{top:?}"
    );
    let top: Vec<String> = cm
        .search("heart failure systolic", 5)
        .into_iter()
        .map(|h| h.display)
        .collect();
    assert!(top.iter().all(|c| c.starts_with("I50.2")), "{top:?}");
    assert_eq!(top.first().map(String::as_str), Some("I50.2"));
    let top: Vec<String> = cm
        .search("acute systolic heart failure", 3)
        .into_iter()
        .map(|h| h.display)
        .collect();
    assert_eq!(top.first().map(String::as_str), Some("I50.21"), "{top:?}");
    // A code, or its start, lists that code first.
    let top: Vec<String> = cm
        .search("I50.2", 3)
        .into_iter()
        .map(|h| h.display)
        .collect();
    assert_eq!(top, vec!["I50.2", "I50.20", "I50.21"]);
    assert!(cm.search("zzzqqq", 10).is_empty());
    // Words people use for what the classification calls otherwise.
    let first = |query: &str| cm.search(query, 1).into_iter().next().map(|h| h.display);
    assert_eq!(first("gi bleed").as_deref(), Some("K92.2"));
    assert!(first("opioid overdose").is_some_and(|c| c.starts_with("T40")));
    let dialysis = coding::icd10pcs().search("hemodialysis", 5);
    assert!(
        dialysis.iter().any(|h| h.code.starts_with("5A1D")),
        "{dialysis:?}"
    );
}

#[test]
fn pcs_codes_have_titles_validity_and_axis_meanings() {
    let pcs = icd10pcs();
    let code = pcs.lookup("0DTJ4ZZ").unwrap_or_else(|| panic!("0DTJ4ZZ"));
    assert_eq!(
        code.description(),
        "Resection of Appendix, Percutaneous Endoscopic Approach"
    );
    assert!(code.is_valid_on(date("2026-04-01")));
    let labels: Vec<String> = code
        .axes()
        .into_iter()
        .map(|a| a.label.unwrap_or_default())
        .collect();
    assert_eq!(labels[0], "Medical and Surgical");
    assert_eq!(labels[1], "Gastrointestinal System");
    assert!(labels[2].starts_with("Resection"), "{labels:?}");
    assert_eq!(labels[3], "Appendix");
    assert_eq!(labels[4], "Percutaneous Endoscopic");
    assert!(pcs.lookup("0DTJ4Z").is_none());
    let top: Vec<String> = pcs
        .search("laparoscopic appendectomy", 5)
        .into_iter()
        .map(|h| h.code)
        .collect();
    assert!(top.contains(&"0DTJ4ZZ".to_string()), "{top:?}");
}
