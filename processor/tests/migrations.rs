//! The schema migrations against the real PostgreSQL of `scripts/services` (needs
//! `POSTGRES_URL`; scripts/test exports it).

mod common;

use common::{admin_client, create_database, Services};

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

/// A database at schema 11 with member rows: migration 12 moves them into one array per
/// (minute, set), and the `rollup_members` view lists each distinct member once.
#[tokio::test(flavor = "multi_thread")]
async fn member_rows_move_into_blocks_and_the_view_lists_them_once() {
    let services = Services::from_env();
    let database = format!("migrate_members_{}", uuid::Uuid::now_v7().simple());
    let url = create_database(&services.postgres_admin, &database).await;
    let client = admin_client(&url).await;
    client
        .batch_execute(
            "create table schema_migrations (
                 version int primary key,
                 name text not null,
                 applied_at timestamptz not null default now())",
        )
        .await
        .expect("schema_migrations");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    files.sort();
    for name in files {
        let version: i32 = name[..4].parse().expect("NNNN_ prefix");
        if version >= 12 {
            continue;
        }
        let sql = std::fs::read_to_string(dir.join(&name)).expect("readable");
        client.batch_execute(&sql).await.expect(&name);
        client
            .execute(
                "insert into schema_migrations (version, name) values ($1, $2)",
                &[&version, &name],
            )
            .await
            .expect("recorded");
    }
    let rows: Vec<(i64, &str, &str)> = vec![
        (60, "users", "u1"),
        (60, "users", "u2"),
        (60, "buyers", "u2"),
        (120, "users", "u1"),
        (
            120,
            "exp_users\tcheckout\tcontrol",
            "user with\ttab and \u{e9}",
        ),
    ];
    for (minute, set, member) in &rows {
        client
            .execute(
                "insert into rollup_members (minute, set_name, member) values ($1, $2, $3)",
                &[minute, set, member],
            )
            .await
            .expect("member row");
    }

    let applied = processor::migrate(&url).await.expect("migrated");
    assert_eq!(applied.first().copied(), Some("0012_member_blocks.sql"));
    let blocks: i64 = client
        .query_one("select count(*) from rollup_member_blocks", &[])
        .await
        .expect("blocks")
        .get(0);
    assert_eq!(blocks, 4, "one block per (minute, set)");
    // A member written again in a later block (as after a restart) is listed once.
    client
        .execute(
            "insert into rollup_member_blocks (minute, set_name, members) values (60, 'users', array['u1'])",
            &[],
        )
        .await
        .expect("a repeated member");
    let listed: Vec<(i64, String, String)> = client
        .query(
            "select minute, set_name, member from rollup_members order by minute, set_name collate \"C\", member collate \"C\"",
            &[],
        )
        .await
        .expect("the view")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut want: Vec<(i64, String, String)> = rows
        .iter()
        .map(|(m, s, u)| (*m, s.to_string(), u.to_string()))
        .collect();
    want.sort();
    assert_eq!(listed, want);
}
