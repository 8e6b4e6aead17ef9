use super::*;

fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut s = LineSplitter::default();
    let mut emit = |t: &[u8], p: bool| out.push((String::from_utf8_lossy(t).into_owned(), p));
    for c in chunks {
        s.feed(c, max, &mut emit);
    }
    s.finish(&mut emit);
    out
}

#[test]
fn lines_across_reads_and_long_lines_split_with_p() {
    assert_eq!(
        split(&[b"ab", b"c\nde\n\nf"], 100),
        vec![
            ("abc".into(), false),
            ("de".into(), false),
            ("".into(), false),
            ("f".into(), false)
        ]
    );
    assert_eq!(
        split(&[b"0123456789", b"01\n"], 4),
        vec![
            ("0123".into(), true),
            ("4567".into(), true),
            ("8901".into(), false)
        ]
    );
    assert_eq!(
        split(&[b"abcdefgh\n"], 4),
        vec![("abcd".into(), true), ("efgh".into(), false)]
    );
}

#[test]
fn generations_are_numbered_before_the_extension() {
    let base = Path::new("/var/log/app/app.log");
    assert_eq!(generation_path(base, 0), base);
    assert_eq!(
        generation_path(base, 12),
        Path::new("/var/log/app/app.12.log")
    );
    assert_eq!(
        generation_path(Path::new("/x/out"), 2),
        Path::new("/x/out.2")
    );
    for n in [0, 1, 7, 123] {
        let name = generation_path(base, n);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert_eq!(generation_of(base, name), Some(n));
    }
    for other in [
        "app.log.1",
        "app.x.log",
        "app..log",
        "app.01.log",
        "fluent-bit-tail.db",
    ] {
        assert_eq!(generation_of(base, other), None, "{other}");
    }
}

fn lines_in(dir: &Path) -> (Vec<String>, Vec<String>) {
    let base = dir.join("app.log");
    let mut names: Vec<(u64, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            Some((generation_of(&base, &name)?, name))
        })
        .collect();
    names.sort();
    let lines = names
        .iter()
        .flat_map(|(_, n)| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    (names.into_iter().map(|(_, n)| n).collect(), lines)
}

#[test]
fn without_the_tail_db_no_generation_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = CriFile::open(&dir.path().join("app.log"), 200, 1, 0o640, None).unwrap();
    for i in 0..40 {
        f.write_line(Stream::Stdout, format!("{i:03}").as_bytes(), false)
            .unwrap();
    }
    assert!(f.rotations >= 4);
    let (names, lines) = lines_in(dir.path());
    assert_eq!(names.len() as u64, f.rotations + 1, "{names:?}");
    let expected: Vec<String> = (0..40).map(|i| format!("{i:03}")).collect();
    assert_eq!(lines, expected, "every line once, in order");
    assert!(f.unread_generations().is_err(), "nothing to ask");
}

#[test]
fn one_flush_of_many_lines_still_gives_files_of_the_rotation_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = CriFile::open(&dir.path().join("app.log"), 1000, 100, 0o640, None).unwrap();
    let time = CriFile::timestamp();
    for i in 0..500 {
        f.write_line_at(&time, Stream::Stdout, format!("{i:04}").as_bytes(), false)
            .unwrap();
    }
    // One line longer than a file: a file of its own.
    f.write_line_at(&time, Stream::Stderr, &[b'x'; 1500], false)
        .unwrap();
    f.flush().unwrap();
    let (names, lines) = lines_in(dir.path());
    for name in &names {
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            size <= 1000 || text.lines().count() == 1,
            "{name}: {size} bytes"
        );
    }
    assert!(names.len() > 20, "{names:?}");
    let mut expected: Vec<String> = (0..500).map(|i| format!("{i:04}")).collect();
    expected.push("x".repeat(1500));
    assert_eq!(lines, expected, "every line once, whole, in order");
}

#[test]
fn a_generation_is_deleted_only_once_tail_has_read_it_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("tail.db");
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.execute(
        "CREATE TABLE in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0)",
        [],
    )
    .unwrap();
    let mut f = CriFile::open(
        &dir.path().join("app.log"),
        100,
        1,
        0o640,
        Some(TailDb::new(&db_path)),
    )
    .unwrap();
    let write = |f: &mut CriFile, from: usize| {
        for i in from..from + 10 {
            f.write_line(Stream::Stdout, format!("{i:03}").as_bytes(), false)
                .unwrap();
        }
    };
    write(&mut f, 0);
    // Nothing read: every generation stays.
    let (before, _) = lines_in(dir.path());
    assert!(before.len() >= 4, "{before:?}");
    assert_eq!(f.unread_generations().unwrap().len(), before.len() - 1);
    let deleted_lines: usize = before[..2]
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.path().join(n))
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    // tail read the first two generations to their end and half of the third.
    for (i, name) in before.iter().take(3).enumerate() {
        let meta = std::fs::metadata(dir.path().join(name)).unwrap();
        let offset = if i < 2 { meta.len() } else { meta.len() / 2 };
        db.execute(
            "INSERT INTO in_tail_files (name, offset, inode, created) VALUES (?1, ?2, ?3, 0)",
            rusqlite::params![
                format!("/mounted/elsewhere/{name}"),
                offset as i64,
                meta.ino() as i64
            ],
        )
        .unwrap();
    }
    write(&mut f, 10);
    let (after, lines) = lines_in(dir.path());
    assert!(
        !after.contains(&before[0]) && !after.contains(&before[1]),
        "{after:?}"
    );
    assert!(after.contains(&before[2]), "half read: kept {after:?}");
    let expected: Vec<String> = (deleted_lines..20).map(|i| format!("{i:03}")).collect();
    assert_eq!(lines, expected, "what is left is whole and in order");
    let unread = f.unread_generations().unwrap();
    assert_eq!(unread[0].0, dir.path().join(&before[2]));
    assert!(unread[0].1 > 0);
}
