//! Clinical coding: the ICD-10-CM and ICD-10-PCS code sets (look-up, hierarchy, notes,
//! free-text search), the Medicare Code Editor's edits and the MS-DRG v43.1 grouper,
//! from the compact tables under `data/`. It knows nothing about FHIR storage or HTTP.
