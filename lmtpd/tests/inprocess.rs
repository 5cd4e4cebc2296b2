//! lmtpd in-process on 127.0.0.1 with a temp SQLite database: the
//! protocol's edge cases with a raw client, and what lands on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, messages, start};

#[tokio::test]
async fn malformed_commands_get_500_501_and_the_session_goes_on() {
    let d = start("", None, "root").await;
    let mut c = Client::connect(d.port).await;
    assert!(c.cmd("FOO bar").await.starts_with("500 5.5.1"));
    assert!(
        c.cmd("MAIL FROM:<a@remote.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("EHLO x").await.starts_with("500 5.5.1"));
    let caps = c.cmd("LHLO mx.test.local").await;
    for cap in [
        "250-lmtpd.test",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "SIZE ",
        "SMTPUTF8",
    ] {
        assert!(caps.contains(cap), "{cap} missing in {caps}");
    }
    assert!(!caps.contains("CHUNKING"));
    assert!(
        c.cmd("RCPT TO:<user1@example.org>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(
        c.cmd("MAIL FROM:a@remote.test")
            .await
            .starts_with("501 5.5.4")
    );
    assert!(
        c.cmd("MAIL FROM:<a@remote.test> X-FOO=1")
            .await
            .starts_with("555 5.5.4")
    );
    assert!(c.cmd("VRFY user1").await.starts_with("252"));
    c.send(b"\xff\xfe\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    let long = format!("NOOP {}", "x".repeat(20_000));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").await.starts_with("250 2.0.0"));
    assert!(
        c.cmd("MAIL FROM:<a@remote.test>")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("503"));
    assert!(c.cmd("RCPT TO:<not an address>").await.starts_with("501"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    let (rcpts, data) = c
        .transaction(
            "a@remote.test",
            &[
                "nosuch@example.org",
                "noreply@example.org",
                "gone@example.org",
                "User1+Tag@example.org",
            ],
            "Subject: hi\n\n.dot line\nbody\n",
        )
        .await;
    assert_eq!(
        rcpts[0],
        "550 5.1.1 <nosuch@example.org> User doesn't exist: nosuch@example.org"
    );
    assert!(rcpts[1].starts_with("550 5.1.1"), "{}", rcpts[1]);
    assert!(rcpts[2].starts_with("550 5.1.1"), "{}", rcpts[2]);
    assert_eq!(rcpts[3], "250 2.1.5 OK");
    assert_eq!(data.len(), 1);
    assert!(
        data[0].starts_with("250 2.0.0 <User1+Tag@example.org> "),
        "{}",
        data[0]
    );
    assert!(data[0].ends_with(" Saved"));
    assert!(c.cmd("QUIT").await.starts_with("221 2.0.0"));

    let root = d.maildir("user1", "example.org");
    let files = messages(&root);
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with("Return-Path: <a@remote.test>\nDelivered-To: User1+Tag@example.org\nReceived: from mx.test.local ([127.0.0.1])\n\tby lmtpd.test with LMTP\n"), "{text}");
    assert!(text.ends_with("Subject: hi\n\n.dot line\nbody\n"), "{text}");
    assert!(!text.contains('\r'));
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    let lfs = text.matches('\n').count();
    assert!(
        name.ends_with(&format!(",S={},W={}", text.len(), text.len() + lfs)),
        "{name}"
    );
    // auto-created, subscribed folders; nothing left in tmp/
    for f in ["Spam", "Trash", "Drafts", "Sent"] {
        assert!(root.join(f).join("cur").is_dir(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("subscriptions")).unwrap(),
        "V\t2\n\nSpam\nTrash\nDrafts\nSent\n"
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    d.stop().await;
}

#[tokio::test]
async fn pipelined_postfix_transaction_gets_replies_in_order() {
    let d = start("", None, "root").await;
    let mut c = Client::connect(d.port).await;
    // Postfix 3.7 writes MAIL, RCPTs and DATA at once, then the message
    // and QUIT at once (shared/reference/lmtp-maildir.md §1.1).
    c.send(b"LHLO mx.test.local\r\nMAIL FROM:<user@example.org> BODY=8BITMIME\r\nRCPT TO:<added@example.org>\r\nRCPT TO:<user1@example.org>\r\nRCPT TO:<user2@example.org>\r\nDATA\r\n").await;
    assert!(c.reply().await.starts_with("250-"));
    assert_eq!(c.reply().await, "250 2.1.0 OK");
    assert!(c.reply().await.starts_with("550 5.1.1 <added@example.org>"));
    assert_eq!(c.reply().await, "250 2.1.5 OK");
    assert_eq!(c.reply().await, "250 2.1.5 OK");
    assert_eq!(c.reply().await, "354 OK");
    c.send("Subject: pipelined\r\n\r\nGrüße\r\n.\r\nQUIT\r\n".as_bytes())
        .await;
    assert!(c.reply().await.starts_with("250 2.0.0 <user1@example.org>"));
    assert!(c.reply().await.starts_with("250 2.0.0 <user2@example.org>"));
    assert!(c.reply().await.starts_with("221"));
    assert_eq!(messages(&d.maildir("user1", "example.org")).len(), 1);
    assert_eq!(messages(&d.maildir("user2", "example.org")).len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn oversize_message_is_552_534_for_each_recipient() {
    let d = start("max_message_size = \"2K\"\n", None, "root").await;
    let mut c = Client::connect(d.port).await;
    c.cmd("LHLO x").await;
    assert!(
        c.cmd("MAIL FROM:<a@remote.test> SIZE=999999")
            .await
            .starts_with("552 5.3.4")
    );
    let big = format!(
        "Subject: big\n\n{}\n",
        "y".repeat(80)
            .repeat(40)
            .chars()
            .collect::<Vec<_>>()
            .chunks(80)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (_, data) = c
        .transaction(
            "a@remote.test",
            &["user1@example.org", "user2@example.org"],
            &big,
        )
        .await;
    assert_eq!(data.len(), 2);
    for r in &data {
        assert!(r.starts_with("552 5.3.4"), "{r}");
    }
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(messages(&d.maildir("user1", "example.org")).is_empty());
    d.stop().await;
}

#[tokio::test]
async fn database_down_answers_451_430() {
    let d = start("", Some("mysql://root@127.0.0.1:9/vmail"), "root").await;
    let mut c = Client::connect(d.port).await;
    c.cmd("LHLO x").await;
    c.cmd("MAIL FROM:<a@remote.test>").await;
    let r = c.cmd("RCPT TO:<user1@example.org>").await;
    assert_eq!(r, "451 4.3.0 <user1@example.org> Temporary internal error");
    d.stop().await;
}

#[tokio::test]
async fn full_mailbox_is_552_522_at_rcpt_and_after_data() {
    let d = start("", None, "root").await;
    let root = d.maildir("small", "example.org");
    let mut c = Client::connect(d.port).await;
    c.cmd("LHLO x").await;
    // 1 MB limit: a 700 KB message fits, the second one does not.
    let body = format!(
        "Subject: big\n\n{}\n",
        vec!["z".repeat(99); 7000].join("\n")
    );
    let (_, r1) = c
        .transaction("a@remote.test", &["small@example.org"], &body)
        .await;
    assert!(r1[0].starts_with("250 2.0.0"), "{}", r1[0]);
    let (_, r2) = c
        .transaction("a@remote.test", &["small@example.org"], &body)
        .await;
    assert!(
        r2[0].starts_with(
            "552 5.2.2 <small@example.org> Benutzer small@example.org hat das Speichervolumen"
        ),
        "{}",
        r2[0]
    );
    let size = std::fs::metadata(&messages(&root)[0]).unwrap().len();
    assert_eq!(
        std::fs::read_to_string(root.join("maildirsize")).unwrap(),
        format!("1048576S\n0 0\n{size} 1\n")
    );
    // now fill it: the next RCPT is refused before DATA
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("maildirsize"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"500000 1\n"))
        .unwrap();
    c.cmd("MAIL FROM:<a@remote.test>").await;
    let r = c.cmd("RCPT TO:<small@example.org>").await;
    assert!(r.starts_with("552 5.2.2 <small@example.org> "), "{r}");
    assert!(
        r.ends_with("User small@example.org has exhausted allowed storage space."),
        "{r}"
    );
    d.stop().await;
}

#[tokio::test]
async fn sixteen_sessions_create_the_same_spam_folder_at_once() {
    let d = start("", None, "root").await;
    let port = d.port;
    let mut tasks = Vec::new();
    for i in 0..16 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(port).await;
            c.cmd("LHLO x").await;
            let (_, r) = c
                .transaction(
                    "a@remote.test",
                    &["user2@example.org"],
                    &format!("X-Spam: Yes\nSubject: spam {i}\n\nbuy\n"),
                )
                .await;
            r[0].clone()
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    let root = d.maildir("user2", "example.org");
    assert_eq!(messages(&root.join("Spam")).len(), 16);
    assert!(messages(&root).is_empty());
    d.stop().await;
}
