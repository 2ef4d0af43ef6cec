//! The OpenAPI 3 document of the controller's API, served at `GET /v1/openapi.json` and
//! checked by `tests/fleet_api.rs` against the router (every documented operation is routed).

pub const DOCUMENT: &str = include_str!("../api/openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_with_every_path_operated() {
        let document: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("JSON");
        assert_eq!(document["openapi"], "3.0.3");
        let paths = document["paths"].as_object().expect("paths");
        assert!(paths.len() >= 20);
        for (path, operations) in paths {
            let operations = operations.as_object().expect("operations");
            assert!(!operations.is_empty(), "{path}");
            for (method, operation) in operations {
                assert!(operation["operationId"].is_string(), "{method} {path}");
                assert!(operation["responses"]["200"].is_object(), "{method} {path}");
            }
        }
    }
}
