//! Prints the plan of one search against an existing database:
//! `cargo run --release -p store --example explain -- DIR TYPE 'name=value&...'`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, resource_type, query] = args.as_slice() else {
        return Err("usage: explain DIR TYPE QUERY".into());
    };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%7C", "|")))
        .collect();
    let parsed = search::parse(
        std::slice::from_ref(resource_type),
        &params,
        search::ParseOptions::default(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = store::Store::open(&format!("sqlite:{dir}"))?;
        let request = store::SearchRequest {
            query: parsed.query,
            count: 10,
            cursor: None,
        };
        let started = std::time::Instant::now();
        let page = store.search(request.clone()).await?;
        println!("{} matches in {:?}", page.matches.len(), started.elapsed());
        println!("{}", store.explain_search(request).await?);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
