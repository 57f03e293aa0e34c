//! registrectl's command line as a shell sees it, with no configuration at all (an empty
//! environment, an empty directory): help exits 0 on stdout, bad usage exits 2 with clap's `error:`
//! line naming the argument, completion scripts for bash, zsh and fish name every subcommand, and the
//! old name `release-lease` still reaches `release-capacity`.

use std::process::{Command, Output};

fn registrectl(args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(registre_testkit::unique("registrectl-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_registrectl"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&dir)
        .output()
        .expect("run registrectl");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const SUBCOMMANDS: [&str; 13] = [
    "migrate",
    "status",
    "enqueue",
    "show",
    "retry",
    "cancel",
    "requeue-stuck",
    "release-capacity",
    "site-check",
    "export-index",
    "index-backfill",
    "completions",
    "help",
];

#[test]
fn help_lists_every_subcommand_and_exits_0() {
    for args in [&["--help"][..], &["-h"][..], &["help"][..]] {
        let out = registrectl(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains("Usage: registrectl <COMMAND>"), "{args:?}: {stdout}");
        for sub in SUBCOMMANDS {
            assert!(stdout.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))), "{sub} missing from {args:?}:\n{stdout}");
        }
        assert!(stdout.contains("Exit codes: 0 done, 1 the operation failed"), "{stdout}");
    }
    for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
        let out = registrectl(&[sub, "--help"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{sub} --help: {stderr}");
        assert!(stdout.contains(&format!("Usage: registrectl {sub}")), "{sub}: {stdout}");
    }
    // `help <sub>` is the same page as `<sub> --help`.
    assert_eq!(text(&registrectl(&["help", "retry"])).0, text(&registrectl(&["retry", "--help"])).0);
    let out = registrectl(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.starts_with("registrectl "), "{:?}", text(&out));
}

#[test]
fn no_command_or_an_unknown_one_exits_2() {
    let out = registrectl(&[]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("Usage: registrectl <COMMAND>"), "{:?}", text(&out));

    let out = registrectl(&["frobnicate"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().next(), Some("error: unrecognized subcommand 'frobnicate'"), "{stderr}");
    // A typo is answered with the nearest name.
    let out = registrectl(&["stauts"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("similar subcommand exists: 'status'"), "{:?}", text(&out));
    // An unknown flag of a known subcommand.
    let out = registrectl(&["status", "--colour"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.starts_with("error: unexpected argument '--colour' found"), "{:?}", text(&out));
}

/// A duration the parser refuses: exit 2 before any configuration is read, one `error:` line naming
/// the flag and the value, never a panic.
#[test]
fn a_bad_duration_exits_2_with_a_line_naming_the_flag() {
    for (args, flag, value, why) in [
        (&["requeue-stuck", "--older-than", "soon"][..], "--older-than <DURATION>", "soon", "expected a duration such as 90s, 30m, 2h, 7d"),
        (&["requeue-stuck", "--older-than", "0s"][..], "--older-than <DURATION>", "0s", "at least 1s"),
        (&["requeue-stuck", "--older-than=100000000d"][..], "--older-than <DURATION>", "100000000d", "at most 36500d"),
        (&["retry", "--errors", "--since", "100000000d"][..], "--since <WHEN>", "100000000d", "at most 36500d"),
        (&["retry", "--errors", "--since", "yesterday"][..], "--since <WHEN>", "yesterday", "an RFC 3339 time"),
        (&["export-index", "--since", "99999999999999999999999s"][..], "--since <WHEN>", "99999999999999999999999s", "at most 36500d"),
        (&["index-backfill", "--since", "36501d"][..], "--since <WHEN>", "36501d", "at most 36500d"),
    ] {
        let out = registrectl(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("error: invalid value '{value}' for '{flag}': ")), "{args:?}: {stderr}");
        assert!(first.contains(why), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn argument_rules_exit_2() {
    let id = "0b8e4c6e-8d4e-4a55-9d0e-2f1f9c1f5a10";
    for args in [
        &["show", "nope"][..],
        &["show"][..],
        &["retry"][..],
        &["retry", id, "--errors"][..],
        &["retry", "--since", "2h"][..],
        &["retry", "--errors", "--source", "deed"][..],
        &["enqueue"][..],
        &["enqueue", "--csv", "f.csv", "--number", "1"][..],
        &["cancel", id, "--by", "a;b"][..],
        &["release-capacity"][..],
        &["site-check", "--number", "1"][..],
        &["export-index", "--lot", "abc"][..],
        &["migrate", "now"][..],
        &["status", "--json", "--json"][..],
        &["completions", "tcsh"][..],
    ] {
        let out = registrectl(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

#[test]
fn completion_scripts_name_every_subcommand_and_flag() {
    for (shell, marker) in [("bash", "complete -F _registrectl"), ("zsh", "#compdef registrectl"), ("fish", "complete -c registrectl")] {
        let out = registrectl(&["completions", shell]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {marker:?} missing");
        // (fish writes flags as `-l older-than`, so without their dashes.)
        for word in SUBCOMMANDS.iter().chain(&["older-than", "errors", "acte-type", "plan_cadastraux"]) {
            assert!(stdout.contains(word), "{shell}: {word} missing");
        }
    }
    // bash can load the script (a syntax error would make `source` fail).
    let out = registrectl(&["completions", "bash"]);
    let script = std::env::temp_dir().join(format!("{}.bash", registre_testkit::unique("completion")));
    std::fs::write(&script, &out.stdout).unwrap();
    let loaded = Command::new("bash").arg("-c").arg(format!("source {} && complete -p registrectl", script.display())).output().expect("bash");
    let _ = std::fs::remove_file(&script);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("registrectl"));
}

#[test]
fn release_lease_is_an_alias_of_release_capacity() {
    let out = registrectl(&["release-lease", "--help"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("Usage: registrectl release-capacity"), "{stdout}");
    assert!(stdout.contains("The old name, release-lease, is still accepted (deprecated)"), "{stdout}");
    // Same refusal as the new name (the worker id is required), and no configuration read yet.
    for name in ["release-lease", "release-capacity"] {
        let out = registrectl(&[name]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(text(&out).1.contains("<WORKER_ID>"), "{name}: {:?}", text(&out));
    }
}

/// A bad value in a section only `index-backfill` reads (the storage of the PDFs, the OCR engine)
/// stops it with the one line naming the variable, exit 2, instead of a silent default; the other
/// subcommands, which never read those sections, are not stopped by it.
#[test]
fn index_backfill_refuses_a_bad_storage_or_engine_with_one_line() {
    let run = |args: &[&str], var: (&str, &str)| {
        Command::new(env!("CARGO_BIN_EXE_registrectl"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env(var.0, var.1)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run registrectl")
    };
    for (var, line) in [
        (("STORAGE_URL", "ftp://x"), "STORAGE_URL=ftp://x: expected a URL starting with file://"),
        (("OCR_ENGINE", "gemini"), "GEMINI_API_KEY is required when OCR_ENGINE=gemini"),
    ] {
        let out = run(&["index-backfill"], var);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{var:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{var:?}: one line expected: {stderr}");
        assert!(lines[0].contains(line), "{var:?}: {stderr}");
        // export-index reads neither: the same value does not stop it at the configuration (it
        // fails later, on the database that does not answer, with exit 1).
        let out = run(&["export-index"], var);
        assert_eq!(out.status.code(), Some(1), "{var:?}: {:?}", text(&out));
    }
}
