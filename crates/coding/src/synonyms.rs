//! Clinical abbreviations and synonyms that search expands: a query word on the left also
//! matches codes holding every word of an expansion on the right.
//!
//! The list is the common abbreviations of discharge summaries and problem lists; it is
//! data, not a table of answers, so adding a line extends every search the same way.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::search::words;

const ABBREVIATIONS: &[(&str, &[&str])] = &[
    ("aaa", &["abdominal aortic aneurysm"]),
    ("af", &["atrial fibrillation"]),
    ("afib", &["atrial fibrillation"]),
    ("aki", &["acute kidney failure", "acute kidney injury"]),
    ("ami", &["acute myocardial infarction"]),
    (
        "arf",
        &["acute respiratory failure", "acute kidney failure"],
    ),
    ("ards", &["acute respiratory distress syndrome"]),
    ("asd", &["atrial septal defect"]),
    ("bph", &["benign prostatic hyperplasia"]),
    ("cabg", &["coronary artery bypass"]),
    (
        "cad",
        &["coronary artery disease", "atherosclerotic heart disease"],
    ),
    ("chf", &["congestive heart failure"]),
    ("ckd", &["chronic kidney disease"]),
    ("copd", &["chronic obstructive pulmonary disease"]),
    ("cva", &["cerebral infarction", "cerebrovascular accident"]),
    ("dka", &["diabetic ketoacidosis", "diabetes ketoacidosis"]),
    ("dm", &["diabetes mellitus"]),
    (
        "dvt",
        &["deep vein thrombosis", "embolism thrombosis deep vein"],
    ),
    ("esrd", &["end stage renal disease"]),
    ("gerd", &["gastro esophageal reflux disease"]),
    ("gi", &["gastrointestinal"]),
    ("hf", &["heart failure"]),
    ("hfref", &["systolic heart failure"]),
    ("hfpef", &["diastolic heart failure"]),
    ("hiv", &["human immunodeficiency virus"]),
    ("htn", &["hypertension"]),
    ("ibd", &["inflammatory bowel disease"]),
    ("ibs", &["irritable bowel syndrome"]),
    ("mi", &["myocardial infarction"]),
    ("ms", &["multiple sclerosis"]),
    ("nstemi", &["non st elevation myocardial infarction"]),
    ("oa", &["osteoarthritis"]),
    ("osa", &["obstructive sleep apnea"]),
    ("pe", &["pulmonary embolism"]),
    ("pna", &["pneumonia"]),
    ("pvd", &["peripheral vascular disease"]),
    ("ra", &["rheumatoid arthritis"]),
    ("sah", &["subarachnoid hemorrhage"]),
    ("sle", &["systemic lupus erythematosus"]),
    ("stemi", &["st elevation myocardial infarction"]),
    ("svt", &["supraventricular tachycardia"]),
    ("t1dm", &["type 1 diabetes mellitus"]),
    ("t2dm", &["type 2 diabetes mellitus"]),
    ("tia", &["transient cerebral ischemic attack"]),
    ("tb", &["tuberculosis"]),
    ("uti", &["urinary tract infection"]),
    ("vsd", &["ventricular septal defect"]),
    ("vt", &["ventricular tachycardia"]),
    // Procedures.
    ("appy", &["resection appendix"]),
    ("lap", &["laparoscopic", "percutaneous endoscopic"]),
    ("laparoscopic", &["percutaneous endoscopic"]),
    ("chole", &["resection gallbladder"]),
    ("cholecystectomy", &["resection gallbladder"]),
    ("appendectomy", &["resection appendix"]),
    ("ptca", &["dilation coronary artery"]),
    ("tka", &["replacement knee joint"]),
    ("tha", &["replacement hip joint"]),
    ("hemodialysis", &["performance urinary filtration"]),
    ("dialysis", &["performance urinary filtration"]),
    // Words the classification spells differently from people.
    ("kidney", &["renal"]),
    ("renal", &["kidney"]),
    ("cardiac", &["heart"]),
    ("heart", &["cardiac"]),
    ("stroke", &["cerebral infarction"]),
    ("cancer", &["malignant neoplasm"]),
    ("tumor", &["neoplasm"]),
    ("broken", &["fracture"]),
    ("attack", &["infarction"]),
    ("bleed", &["hemorrhage"]),
    ("bleeding", &["hemorrhage"]),
    ("overdose", &["poisoning"]),
];

/// The expansions of a (stemmed, lower-case) query word, each as its words.
pub fn expansions(word: &str) -> &'static [Vec<String>] {
    static TABLE: OnceLock<HashMap<String, Vec<Vec<String>>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for (abbreviation, phrases) in ABBREVIATIONS {
            let key = words(abbreviation).join(" ");
            let entry = table.entry(key).or_default();
            entry.extend(phrases.iter().map(|phrase| words(phrase)));
        }
        table
    });
    table.get(word).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::expansions;

    #[test]
    fn abbreviations_expand_to_stemmed_words() {
        assert_eq!(
            expansions("chf"),
            &[vec![
                "congestive".to_string(),
                "heart".to_string(),
                "failure".to_string()
            ]]
        );
        assert!(expansions("xyzzy").is_empty());
    }
}
