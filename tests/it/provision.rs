//! Provisioning through the binary against servers on 127.0.0.1 that the tests start: datasets
//! (`lpft fetch-data`: archives, raw files, parquet from a Hub dataset repo) and Hub models
//! (`--model owner/name`, bare names, `HF_TOKEN`, `HF_HUB_OFFLINE`). The real hosts are not
//! reachable from the machines these tests run on; the code paths are the real ones.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::http_server::{Reply, Server};
use crate::util::{fixtures, Env};

/// `lpft` with an isolated environment plus `vars`; returns (exit code, stdout, stderr).
fn run(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = env.command(vars).args(args).output().expect("running lpft");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// The embedded CB, as committed (the same bytes the binary carries).
fn cb_files() -> Vec<(&'static str, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/superglue/CB");
    ["train.jsonl", "val.jsonl", "test.jsonl"]
        .into_iter()
        .map(|f| (f, std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

/// Everything installed under a data directory (relative paths), staging folders included.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

const CB_ZIP: &str = "/dl.fbaipublicfiles.com/glue/superglue/data/v2/CB.zip";
const CB_RAW: &str =
    "/raw.githubusercontent.com/tonyzhaozh/few-shot-learning/e04d8643be91c2cce63f33e07760ff75d5aa3ad0/data/cb";

/// The built-in manifest's CB entry end to end: the good case through a mirror, offline mode,
/// a corrupted archive (fall back to the next source, then fail when it is corrupted too), and a
/// download cut off halfway. Failures leave nothing installed and exit 2.
#[test]
fn fetch_data_installs_verified_files_or_nothing() {
    let env = Env::new("fetch_data");
    let server = Server::start();
    let mirror = server.url("");
    let home_data = env.home.join("data");
    let files = cb_files();
    let members: Vec<(&str, Vec<u8>)> = vec![
        ("CB/train.jsonl", files[0].1.clone()),
        ("CB/test.jsonl", files[2].1.clone()),
        ("CB/val.jsonl", files[1].1.clone()),
    ];
    let good_zip = zip_of(&members);

    // Offline, by flag and by HF_HUB_OFFLINE: no request, the missing files named, exit 2.
    for (vars, args) in [
        (
            vec![],
            vec!["fetch-data", "cb", "--offline", "--mirror", &mirror],
        ),
        (
            vec![("HF_HUB_OFFLINE", "1")],
            vec!["fetch-data", "cb", "--mirror", &mirror],
        ),
    ] {
        let (code, _, err) = run(&env, &vars, &args);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("offline") && err.contains("superglue/CB/train.jsonl"),
            "{err}"
        );
    }
    assert!(server.requests().is_empty(), "offline mode made requests");

    // A corrupted archive member and a corrupted raw copy: every source fails, nothing lands.
    let mut bad = members.clone();
    bad[0].1[100] ^= 0x20;
    server.route(CB_ZIP, Reply::ok(zip_of(&bad)));
    let mut bad_raw = files[0].1.clone();
    bad_raw[7] ^= 0x20;
    server.route(&format!("{CB_RAW}/train.jsonl"), Reply::ok(bad_raw));
    let (code, _, err) = run(&env, &[], &["fetch-data", "cb", "--mirror", &mirror]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("superglue/CB/train.jsonl")
            && err.contains("nothing was installed")
            && err.contains("CB.zip (member CB/train.jsonl): sha256 is")
            && err.contains("data/cb/train.jsonl: sha256 is"),
        "{err}"
    );
    assert!(tree(&home_data).is_empty(), "{:?}", tree(&home_data));

    // Cut off halfway: an error saying so; nothing lands.
    server.route(&format!("{CB_RAW}/train.jsonl"), Reply::status(404));
    server.route(
        CB_ZIP,
        Reply::ok(good_zip.clone()).cut_after(good_zip.len() / 2),
    );
    let (code, _, err) = run(&env, &[], &["fetch-data", "cb", "--mirror", &mirror]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(tree(&home_data).is_empty(), "{:?}", tree(&home_data));

    // The good case: installed and verified, then found by `lpft data` in $LPFT_HOME/data.
    server.route(CB_ZIP, Reply::ok(good_zip));
    let (code, out, err) = run(&env, &[], &["fetch-data", "cb", "--mirror", &mirror]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cb") && out.contains("installed"), "{out}");
    assert_eq!(
        tree(&home_data),
        [
            "superglue/CB/test.jsonl",
            "superglue/CB/train.jsonl",
            "superglue/CB/val.jsonl"
        ]
    );
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(home_data.join("superglue/CB").join(name)).unwrap(),
            bytes
        );
    }
    let (_, out, _) = run(&env, &[], &["data", "--task", "cb"]);
    assert!(out.contains("$LPFT_HOME/data"), "{out}");
    // Again: verified in place, nothing downloaded; and offline it is simply present.
    let served = server.requests().len();
    let (code, out, _) = run(&env, &[("HF_HUB_OFFLINE", "1")], &["fetch-data", "cb"]);
    assert_eq!(code, 0);
    assert!(out.contains("present and verified"), "{out}");
    assert_eq!(server.requests().len(), served);

    // A task without a pinned source is refused with the list of fetchable ones.
    let (code, _, err) = run(&env, &[], &["fetch-data", "boolq", "--mirror", &mirror]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no pinned source") && err.contains("rte"),
        "{err}"
    );
}

/// Writes a parquet file with string columns `question`, `passage` and an int64 `label`.
fn boolq_parquet(rows: &[(&str, &str, i64)]) -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let schema = Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY question (UTF8); \
             REQUIRED BYTE_ARRAY passage (UTF8); REQUIRED INT64 label; }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        for col in 0..3 {
            let mut w = group.next_column().unwrap().unwrap();
            if col < 2 {
                let values: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| ByteArray::from(if col == 0 { r.0 } else { r.1 }))
                    .collect();
                w.typed::<ByteArrayType>()
                    .write_batch(&values, None, None)
                    .unwrap();
            } else {
                let values: Vec<i64> = rows.iter().map(|r| r.2).collect();
                w.typed::<Int64Type>()
                    .write_batch(&values, None, None)
                    .unwrap();
            }
            w.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
    }
    buf
}

/// A manifest of one's own whose sources are parquet files in a Hub dataset repo (resolved
/// through `HF_ENDPOINT`), converted to the JSON lines the task reader takes.
#[test]
fn fetch_data_converts_parquet_from_a_hub_dataset_repo() {
    let env = Env::new("fetch_parquet");
    let server = Server::start();
    let train: Vec<(&str, &str, i64)> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                ("is it true?", "It is true.", 1)
            } else {
                ("is it false?", "No, it is not.", 0)
            }
        })
        .collect();
    let val = [
        ("is water wet?", "Water is wet.", 1),
        ("is fire cold?", "No.", 0),
    ];
    let rev = "0123456789abcdef0123456789abcdef01234567";
    for (name, rows) in [("train", &train[..]), ("validation", &val[..])] {
        server.route(
            &format!("/datasets/aps/super_glue/resolve/{rev}/boolq/{name}-00000-of-00001.parquet"),
            Reply::ok(boolq_parquet(rows)),
        );
    }
    // The JSON lines the conversion must give (keys sorted), to pin their hashes.
    let jsonl = |rows: &[(&str, &str, i64)]| -> Vec<u8> {
        rows.iter()
            .map(|(q, p, l)| {
                format!("{{\"label\":{l},\"passage\":\"{p}\",\"question\":\"{q}\"}}\n")
            })
            .collect::<String>()
            .into_bytes()
    };
    let manifest = env.home.join("boolq.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[task]]\nname = \"boolq\"\ndir = \"superglue/BoolQ\"\n\
             [[task.file]]\npath = \"train.jsonl\"\nsha256 = \"{}\"\n\
             sources = [{{ url = \"hf://datasets/aps/super_glue@{rev}/boolq/train-00000-of-00001.parquet\", convert = \"parquet-jsonl\" }}]\n\
             [[task.file]]\npath = \"val.jsonl\"\nsha256 = \"{}\"\n\
             sources = [{{ url = \"hf://datasets/aps/super_glue@{rev}/boolq/validation-00000-of-00001.parquet\", convert = \"parquet-jsonl\" }}]\n",
            sha(&jsonl(&train)),
            sha(&jsonl(&val)),
        ),
    )
    .unwrap();
    let endpoint = server.url("");
    let manifest_s = manifest.display().to_string();
    let (code, out, err) = run(
        &env,
        &[("HF_ENDPOINT", &endpoint)],
        &["fetch-data", "boolq", "--manifest", &manifest_s],
    );
    assert_eq!(code, 0, "{out}{err}");
    let installed = env.home.join("data/superglue/BoolQ/train.jsonl");
    assert_eq!(std::fs::read(&installed).unwrap(), jsonl(&train));
    let (code, out, err) = run(&env, &[], &["data", "--task", "boolq"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("train") && out.contains("False=4 True=5"),
        "{out}"
    );
    assert!(
        out.contains("test") && out.contains("False=1 True=1"),
        "{out}"
    );
}

/// Serves a model directory as the Hub serves `repo` at `commit`: `resolve/main/FILE` with the
/// commit and etag headers `hf-hub` reads (weights as an LFS file whose etag is its SHA-256).
fn serve_model(
    server: &Server,
    repo: &str,
    commit: &str,
    dir: &Path,
    weights: Option<Vec<u8>>,
    token: Option<&str>,
) {
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let path = format!("/{repo}/resolve/main/{file}");
        let reply = if file == "model.safetensors" {
            let body = weights.clone().unwrap_or_else(|| bytes.clone());
            Reply::ok(body)
                .header("x-linked-etag", &format!("\"{}\"", sha(&bytes)))
                .header("etag", "\"weak\"")
        } else {
            // Small files are git blobs; any stable etag will do for the cache's blob name.
            Reply::ok(bytes.clone()).header("etag", &format!("\"{}\"", &sha(&bytes)[..40]))
        };
        let reply = reply.header("x-repo-commit", commit);
        let reply = match token {
            Some(t) => reply.only_with("Authorization", &format!("Bearer {t}")),
            None => reply,
        };
        server.route(&path, reply);
    }
}

/// Hub models through the binary: a bare canonical name redirected to its organisation (as the
/// Hub does), the cache then used offline under either name, an offline miss, a gated repo that
/// needs `HF_TOKEN`, and corrupted weights caught by their SHA-256.
#[test]
fn hub_models_download_resolve_offline_and_verify() {
    let env = Env::new("hub_models");
    let server = Server::start();
    let endpoint = server.url("");
    let cache = env.home.join("hf-cache");
    let cache_s = cache.display().to_string();
    let tiny = fixtures().join("tiny-roberta");
    let commit = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    serve_model(
        &server,
        "FacebookAI/roberta-base",
        commit,
        &tiny,
        None,
        None,
    );
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        server.route(
            &format!("/roberta-base/resolve/main/{file}"),
            Reply::redirect(
                307,
                &format!("/FacebookAI/roberta-base/resolve/main/{file}"),
            ),
        );
    }
    let hub = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];

    let (code, out, err) = run(&env, &hub, &["inspect", "--model", "roberta-base"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("roberta") && out.contains("hidden size    32"),
        "{out}"
    );
    assert!(cache
        .join("models--roberta-base/snapshots")
        .join(commit)
        .is_dir());

    // Offline: found in the cache under the name used, and under the organisation's name.
    let served = server.requests().len();
    let offline = [hub[0], hub[1], ("HF_HUB_OFFLINE", "1")];
    for name in ["roberta-base", "FacebookAI/roberta-base"] {
        let (code, _, err) = run(&env, &offline, &["inspect", "--model", name]);
        assert_eq!(code, 0, "{name}: {err}");
    }
    // An offline miss says so and does not try the network.
    let (code, _, err) = run(&env, &offline, &["inspect", "--model", "owner/not-cached"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("nothing was downloaded"),
        "{err}"
    );
    assert_eq!(
        server.requests().len(),
        served,
        "offline mode made requests"
    );

    // A gated repo: refused without a token, served with HF_TOKEN (sent as a bearer token).
    serve_model(
        &server,
        "owner/gated",
        commit,
        &tiny,
        None,
        Some("hf_secret"),
    );
    let (code, _, err) = run(&env, &hub, &["inspect", "--model", "owner/gated"]);
    assert_eq!(code, 2);
    assert!(err.contains("owner/gated") && err.contains("401"), "{err}");
    let wrong = [hub[0], hub[1], ("HF_TOKEN", "hf_wrong")];
    let (code, _, err) = run(&env, &wrong, &["inspect", "--model", "owner/gated"]);
    assert_eq!(code, 2, "{err}");
    let with_token = [hub[0], hub[1], ("HF_TOKEN", "hf_secret")];
    let (code, _, err) = run(&env, &with_token, &["inspect", "--model", "owner/gated"]);
    assert_eq!(code, 0, "{err}");
    assert!(cache
        .join("models--owner--gated/snapshots")
        .join(commit)
        .is_dir());

    // Corrupted weights: the blob's SHA-256 does not match its name; error, nothing kept.
    let mut bad = std::fs::read(tiny.join("model.safetensors")).unwrap();
    let n = bad.len();
    bad[n - 10] ^= 0x40;
    serve_model(&server, "owner/corrupt", commit, &tiny, Some(bad), None);
    let (code, _, err) = run(&env, &hub, &["inspect", "--model", "owner/corrupt"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("sha256") && err.contains("model.safetensors"),
        "{err}"
    );
    let blobs = cache.join("models--owner--corrupt/blobs");
    let weights_blob = blobs.join(sha(&std::fs::read(tiny.join("model.safetensors")).unwrap()));
    assert!(!weights_blob.exists(), "the corrupted blob was kept");
}

/// With nothing configured, the embedded CB is what every command reads.
#[test]
fn data_falls_back_to_the_embedded_cb() {
    let env = Env::new("embedded_cb");
    let (code, out, err) = run(&env, &[], &["data", "--task", "cb"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lpft's embedded copy"), "{out}");
    let export = env.home.join("export");
    let export_s = export.display().to_string();
    let (code, _, err) = run(&env, &[], &["data", "--task", "cb", "--export", &export_s]);
    assert_eq!(code, 0, "{err}");
    for (name, bytes) in cb_files().into_iter().filter(|(n, _)| *n != "test.jsonl") {
        assert_eq!(
            std::fs::read(export.join("superglue/CB").join(name)).unwrap(),
            bytes
        );
    }
    // A task that is nowhere: every place and the command that gets it.
    let (code, _, err) = run(&env, &[], &["data", "--task", "rte"]);
    assert_eq!(code, 2);
    for needle in [
        "--data-dir",
        "$LPFT_DATA_DIR",
        "./data",
        "$LPFT_HOME/data",
        "lpft fetch-data rte",
    ] {
        assert!(err.contains(needle), "`{needle}` not in {err}");
    }
}
