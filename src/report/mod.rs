//! Reports over run directories: tables in the paper's layouts beside the paper's own values
//! (Markdown, CSV, JSON), SVG figures, an `index.html`, and a findings section that checks the
//! paper's claims on our runs.
//!
//! The last stage of the pipeline: it only reads run directories (`metrics.json`,
//! `analysis.json`, `calibration.json`, `kernels/ntk.json`, `lp-path.json`, `history.jsonl`,
//! `ood/*.json`) and never trains or recomputes.

pub mod chart;
pub mod collect;
pub mod figures;
pub mod findings;
pub mod paper;
pub mod render;
pub mod tables;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::experiment::grid::ExperimentRecord;
use crate::fsutil::{read_json_opt, write_atomic};
use crate::rundir::write_json;
use crate::rundir::EXPERIMENT as EXPERIMENT_FILE;
use collect::{read_runs, RunRecord};
use figures::Figure;
use findings::Finding;
use render::table::{html_escape, Table};

/// What [`write_report`] wrote.
#[derive(Debug)]
pub struct ReportOutcome {
    pub index_html: PathBuf,
    pub markdown: PathBuf,
    pub runs: usize,
    pub tables: Vec<Table>,
    pub figures: usize,
    pub findings: Vec<Finding>,
    /// The grid's cells not finished yet (see [`Report::unfinished`]).
    pub unfinished: Vec<String>,
}

/// Everything of the report, before writing.
pub struct Report {
    pub title: String,
    pub description: String,
    pub encoder: Vec<String>,
    pub differences: Vec<String>,
    /// The grid's cells without a finished run (`metrics.json`), as `variant/task/method/seed-S`;
    /// empty for a finished grid or runs that are not a grid's.
    pub unfinished: Vec<String>,
    pub findings: Vec<Finding>,
    /// Sections: (heading, tables, figures).
    pub sections: Vec<(String, Vec<Table>, Vec<Figure>)>,
}

/// Builds the report of every finished run under `runs_root`.
///
/// # Errors
/// No runs; unreadable run files; a figure that cannot be drawn.
pub fn build(runs_root: &Path) -> Result<(Report, Vec<RunRecord>)> {
    let runs = read_runs(runs_root)?;
    // A grid's record beside its runs or one level up; a corrupt one is an error, not "none".
    let mut record: Option<ExperimentRecord> = read_json_opt(&runs_root.join(EXPERIMENT_FILE))?;
    if record.is_none() {
        if let Some(parent) = runs_root.parent() {
            record = read_json_opt(&parent.join(EXPERIMENT_FILE))?;
        }
    }
    let (title, description) = match &record {
        Some(r) => (
            format!("lpft report: {}", r.config.name),
            r.config.description.clone(),
        ),
        None => (
            format!("lpft report: {}", runs_root.display()),
            String::new(),
        ),
    };
    let mut encoder: Vec<String> = Vec::new();
    for r in &runs {
        let line = match &r.manifest {
            Some(m) => format!(
                "`{}` ({}, sha256 {}), lpft {} (commit {}), {} thread(s), {}",
                m.model,
                r.config.model,
                &m.model_sha256[..m.model_sha256.len().min(12)],
                m.lpft_version,
                m.git_commit
                    .as_deref()
                    .map_or("unknown", |c| &c[..c.len().min(10)]),
                m.threads,
                m.device.as_deref().unwrap_or("device not recorded")
            ),
            None => format!("`{}`", r.config.model),
        };
        if !encoder.contains(&line) {
            encoder.push(line);
        }
    }
    let mut sections = Vec::new();
    let base_variants = tables::variants(&runs, false);
    let mut acc_tables = Vec::new();
    for v in &base_variants {
        acc_tables.push(tables::accuracy(&runs, v));
        if let Some(t) = tables::ood_accuracy(&runs, v) {
            acc_tables.push(t);
        }
    }
    sections.push(("Accuracy (Table 8, 10)".to_string(), acc_tables, Vec::new()));
    let task_list = tables::tasks(&runs);
    let mut train = (Vec::new(), Vec::new());
    let mut feat = (Vec::new(), Vec::new());
    let mut norm = (Vec::new(), Vec::new());
    let mut kern = (Vec::new(), Vec::new());
    let mut cal = (Vec::new(), Vec::new());
    let mut sweep = (Vec::new(), Vec::new());
    for task in &task_list {
        for v in &base_variants {
            train.0.extend(tables::training(&runs, v, task));
            train.1.extend(figures::loss_curves(&runs, v, task)?);
            feat.0.extend(tables::features(&runs, v, task));
            norm.0.extend(tables::norms(&runs, v, task));
            norm.1.extend(figures::norm_bars(&runs, v, task)?);
            norm.1.extend(figures::lp_path(&runs, v, task)?);
            norm.1.extend(figures::epoch_norms(&runs, v, task)?);
            kern.0.extend(tables::kernels(&runs, v, task));
            kern.0.extend(tables::alignment(&runs, v, task));
            kern.1.extend(figures::spectra(&runs, v, task)?);
            kern.1.extend(figures::heat_maps(&runs, v, task)?);
            cal.0.extend(tables::calibration(&runs, v, task));
            cal.1.extend(figures::reliability(&runs, v, task)?);
        }
        sweep.0.extend(tables::norm_sweep(&runs, task));
        sweep.1.extend(figures::sweep(&runs, task)?);
    }
    for (name, (t, f)) in [
        ("Training (losses)", train),
        ("Feature statistics (Table 1)", feat),
        ("Classifier norms (Table 13, Fig. 1)", norm),
        ("Norm-scaling sweep (Fig. 3, 11)", sweep),
        ("Neural tangent kernel (Table 2, Fig. 2, 8, 9)", kern),
        ("Calibration (Table 3, 14)", cal),
    ] {
        if !t.is_empty() || !f.is_empty() {
            sections.push((name.to_string(), t, f));
        }
    }
    sections.push((
        "Runs".to_string(),
        vec![tables::runtimes(&runs)],
        Vec::new(),
    ));
    let findings = findings::findings(&runs);
    let report = Report {
        title,
        description,
        encoder,
        differences: tables::differences(&runs),
        unfinished: record
            .as_ref()
            .map(|r| {
                r.cells
                    .iter()
                    .filter(|c| !crate::rundir::is_finished(&c.dir))
                    .map(|c| format!("{}/{}/{}/seed-{}", c.variant, c.task, c.method, c.seed))
                    .collect()
            })
            .unwrap_or_default(),
        findings,
        sections,
    };
    Ok((report, runs))
}

/// Builds the report of the runs under `runs_root` and writes it to `out`: `report.md`,
/// `index.html`, `tables/<id>.csv`, `tables.json`, `findings.json`, `figures/<id>.svg`. Every
/// file is written atomically.
///
/// # Errors
/// As [`build`], and write errors naming the file.
pub fn write_report(runs_root: &Path, out: &Path) -> Result<ReportOutcome> {
    let (report, runs) = build(runs_root)?;
    let mut all_tables: Vec<Table> = vec![findings::table(&report.findings)];
    let mut n_fig = 0;
    for (_, tables, figs) in &report.sections {
        all_tables.extend(tables.iter().cloned());
        for f in figs {
            write_atomic(
                &out.join("figures").join(format!("{}.svg", f.id)),
                f.svg.as_bytes(),
            )?;
            n_fig += 1;
        }
    }
    for t in &all_tables {
        write_atomic(
            &out.join("tables").join(format!("{}.csv", t.id)),
            t.to_csv().as_bytes(),
        )?;
    }
    write_json(&out.join("tables.json"), &all_tables)?;
    write_json(&out.join("findings.json"), &report.findings)?;
    let md = markdown(&report);
    let markdown_path = out.join("report.md");
    write_atomic(&markdown_path, md.as_bytes())?;
    let index_html = out.join("index.html");
    write_atomic(&index_html, html(&report).as_bytes())?;
    Ok(ReportOutcome {
        index_html,
        markdown: markdown_path,
        runs: runs.len(),
        tables: all_tables,
        figures: n_fig,
        findings: report.findings,
        unfinished: report.unfinished,
    })
}

const PREAMBLE: &str = "Numbers computed by lpft from the run directories; the paper's values \
    (Tomihari & Sato, NeurIPS 2024; roberta-base, 5 seeds) are shown beside ours as printed. \
    Fractions are shown in %. The paper's findings are checked, not assumed: where they do not \
    hold on this encoder, the report says so.";

fn markdown(r: &Report) -> String {
    let mut s = format!("# {}\n\n", r.title);
    if !r.description.is_empty() {
        s.push_str(&format!("{}\n\n", r.description));
    }
    s.push_str(&format!("{PREAMBLE}\n\n## Encoder and settings\n\n"));
    for e in &r.encoder {
        s.push_str(&format!("- Encoder: {e}\n"));
    }
    s.push_str("\nWhat differs from the paper:\n\n");
    for d in &r.differences {
        s.push_str(&format!("- {d}\n"));
    }
    if !r.unfinished.is_empty() {
        s.push_str(&format!(
            "\n**{} cell(s) of the grid not finished**; the tables and findings are of the \
             finished runs only: {}\n",
            r.unfinished.len(),
            r.unfinished.join(", ")
        ));
    }
    s.push_str("\n## Findings\n\n");
    s.push_str(&findings::table(&r.findings).to_markdown());
    for (name, tables, figs) in &r.sections {
        s.push_str(&format!("## {name}\n\n"));
        for t in tables {
            s.push_str(&t.to_markdown());
        }
        for f in figs {
            s.push_str(&format!(
                "![{}](figures/{}.svg)\n\n*{}*\n\n",
                f.id, f.id, f.caption
            ));
        }
    }
    s
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;\
    padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}\
    th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}\
    td:first-child,th:first-child{text-align:left}.caption{color:#555;font-size:.9em}\
    figure{display:inline-block;margin:.5em;vertical-align:top;max-width:780px}\
    figcaption{font-size:.85em;color:#444}.holds{color:#176a1a;font-weight:600}\
    .fails{color:#a11;font-weight:600}.nm{color:#777}td.t{text-align:left}nav a{margin-right:1em}";

fn html(r: &Report) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        html_escape(&r.title),
        html_escape(&r.title)
    );
    if !r.description.is_empty() {
        s.push_str(&format!("<p>{}</p>\n", html_escape(&r.description)));
    }
    s.push_str(&format!("<p>{}</p>\n<nav>", html_escape(PREAMBLE)));
    s.push_str("<a href=\"#findings\">Findings</a>");
    for (i, (name, _, _)) in r.sections.iter().enumerate() {
        s.push_str(&format!("<a href=\"#s{i}\">{}</a>", html_escape(name)));
    }
    s.push_str("</nav>\n<h2>Encoder and settings</h2>\n<ul>");
    for e in &r.encoder {
        s.push_str(&format!("<li>Encoder: {}</li>", html_escape(e)));
    }
    s.push_str("</ul>\n<p>What differs from the paper:</p>\n<ul>");
    for d in &r.differences {
        s.push_str(&format!("<li>{}</li>", html_escape(d)));
    }
    s.push_str("</ul>\n");
    if !r.unfinished.is_empty() {
        s.push_str(&format!(
            "<p><b>{} cell(s) of the grid not finished</b>; the tables and findings are of the \
             finished runs only: {}</p>\n",
            r.unfinished.len(),
            html_escape(&r.unfinished.join(", "))
        ));
    }
    s.push_str("<h2 id=\"findings\">Findings</h2>\n");
    let ft = findings::table(&r.findings).to_html();
    let ft = ft
        .replace(
            "<td class=\"t\">holds</td>",
            "<td class=\"t holds\">holds</td>",
        )
        .replace(
            "<td class=\"t\">does not hold</td>",
            "<td class=\"t fails\">does not hold</td>",
        )
        .replace(
            "<td class=\"t\">not measured</td>",
            "<td class=\"t nm\">not measured</td>",
        );
    s.push_str(&ft);
    for (i, (name, tables, figs)) in r.sections.iter().enumerate() {
        s.push_str(&format!("<h2 id=\"s{i}\">{}</h2>\n", html_escape(name)));
        for t in tables {
            s.push_str(&t.to_html());
        }
        for f in figs {
            s.push_str(&format!(
                "<figure><img src=\"figures/{}.svg\" alt=\"{}\" width=\"760\">\
                 <figcaption>{}</figcaption></figure>\n",
                html_escape(&f.id),
                html_escape(&f.id),
                html_escape(&f.caption)
            ));
        }
    }
    s.push_str("</body></html>\n");
    s
}
