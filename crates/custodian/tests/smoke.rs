mod common;

use common::{TestServer, agent};

#[test]
fn server_starts_and_answers_health_and_metadata() {
    let (server, _dir) = TestServer::start();
    let http = agent();
    let mut health = http
        .get(&format!("{}/health", server.origin))
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok");
    let mut metadata = http
        .get(&format!("{}/metadata", server.base))
        .call()
        .unwrap();
    assert_eq!(metadata.status(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&metadata.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["fhirVersion"], "4.0.1");
}
