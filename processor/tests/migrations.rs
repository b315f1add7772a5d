//! The schema migrations against the real PostgreSQL of `scripts/services` (needs
//! `POSTGRES_URL`; scripts/test exports it).

mod common;

use common::Services;

/// A new, empty database; its URL.
async fn new_database(services: &Services, test: &str) -> String {
    let (admin, connection) =
        tokio_postgres::connect(&services.postgres_admin, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL reachable at POSTGRES_URL");
    tokio::spawn(connection);
    let database = format!("{test}_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("create database {database}"))
        .await
        .expect("create database");
    match services.postgres_admin.rfind('/') {
        Some(i) => format!("{}/{database}", &services.postgres_admin[..i]),
        None => panic!("POSTGRES_URL has no database"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_on_a_new_database_apply_each_migration_once() {
    let services = Services::from_env();
    for round in 0..5 {
        let url = new_database(&services, &format!("migrate_race{round}")).await;
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { processor::migrate(&url).await })
            })
            .collect();
        let mut applied = Vec::new();
        for start in starts {
            let files = start
                .await
                .expect("no panic")
                .unwrap_or_else(|e| panic!("round {round}: an instance failed to migrate: {e}"));
            applied.extend(files);
        }
        let mut unique = applied.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            applied.len(),
            unique.len(),
            "round {round}: a migration applied twice: {applied:?}"
        );
        assert_eq!(
            processor::migrate(&url).await.expect("migrated").len(),
            0,
            "round {round}: everything applied by one of the four"
        );
    }
}
