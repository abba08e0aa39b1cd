//! The disk watchdog: a warning at 90% of `disk_mb`, a stop past it.

use super::*;
use berth_proto::ports::SessionEvent;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_session_is_warned_near_its_disk_limit_and_stopped_past_it_while_its_neighbour_runs_on() {
    let small = TemplateConfig {
        image: "berth/tiny:latest".into(),
        disk_mb: 2,
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("small".to_owned(), small)]), 1000).await;
    let watchdog = h.sessions.watch_disks(Duration::from_millis(50));
    let writer = running(&h, "alice", "small").await;
    let neighbour = running(&h, "bob", "small").await;
    let mut notices = h.sessions.tap(&writer.id, true).notices;
    let home = h.runtime.home_of(&writer.id).unwrap();

    std::fs::write(home.join("half"), vec![0u8; MIB]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_of(&h, &writer.id).await, SessionState::Running);

    std::fs::write(home.join("more"), vec![0u8; MIB * 9 / 10]).unwrap();
    let warning = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap();
    assert_eq!(
        warning,
        SessionEvent::DiskWarning {
            used_mb: 1,
            limit_mb: 2
        }
    );
    assert_eq!(state_of(&h, &writer.id).await, SessionState::Running);

    std::fs::write(home.join("past"), vec![0u8; MIB / 2]).unwrap();
    wait_until("the writer to be stopped", || async {
        state_of(&h, &writer.id).await == SessionState::Stopped
    })
    .await;
    let record = h.store.get_session(&writer.id).await.unwrap().unwrap();
    assert_eq!(record.stop_reason.as_deref(), Some("disk_quota"));
    assert!(
        timeline_kinds(&h, &writer.id)
            .await
            .contains(&"disk_quota".to_owned())
    );
    wait_until("its container, and so its files, to be gone", || async {
        h.runtime.spec_of_session(&writer.id).is_none()
    })
    .await;
    assert_eq!(state_of(&h, &neighbour.id).await, SessionState::Running);
    watchdog.abort();
}
