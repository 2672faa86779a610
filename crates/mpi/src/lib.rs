//! The master patient index's matching engine: compares person records field by field,
//! scores candidate pairs with a Fellegi-Sunter model trained without labels, and groups
//! matches into clusters. It knows nothing about FHIR storage or HTTP.
