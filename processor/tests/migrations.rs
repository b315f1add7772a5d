//! The schema migrations against the real PostgreSQL of `scripts/services` (needs
//! `POSTGRES_URL`; scripts/test exports it).

mod common;

use common::{create_database, Services};

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_on_a_new_database_apply_each_migration_once() {
    let services = Services::from_env();
    for round in 0..5 {
        let database = format!("migrate_race{round}_{}", uuid::Uuid::now_v7().simple());
        let url = create_database(&services.postgres_admin, &database).await;
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
