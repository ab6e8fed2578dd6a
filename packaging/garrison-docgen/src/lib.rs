//! garrison-docgen: the documentation that is generated from the code, so that it cannot
//! drift from it. The `garrison` and `garrison-agent` binaries call it for their
//! `completions`, `man` and `config-reference` commands:
//!
//! * [`completions`]: a shell completion script for a binary's clap command;
//! * [`man_pages`]: one roff man page per command and subcommand;
//! * [`config_reference`]: the Markdown reference of a configuration file, from the JSON
//!   Schema ([`schemars`]) of the type the file is parsed into: every key with its type, its
//!   default (what serde fills in) and its description (the field's doc comment).
//!
//! What this crate must never do: read a configuration file or anything else besides what it
//! is handed; leave a key out of a reference, or print a key whose description, type or
//! default it cannot tell (that is a [`ReferenceError`], so that a new configuration key
//! without a doc comment fails the test that regenerates `docs/configuration.md`).
#![forbid(unsafe_code)]

mod reference;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;
pub use reference::{ReferenceError, TYPE_EXTENSION, config_reference};
pub use schemars;

/// Writes the completion script of `command` for `shell`; the binary is `command`'s name.
pub fn completions(mut command: clap::Command, shell: Shell, out: &mut dyn Write) {
    let bin_name = command.get_name().to_owned();
    if shell != Shell::Bash || !bin_name.contains('-') {
        clap_complete::generate(shell, &mut command, bin_name, out);
        return;
    }
    // clap_complete's bash script spells the state of a hyphenated binary two ways
    // (`garrison__agent__subcmd__run` where it goes through the words,
    // `garrison__subcmd__agent__subcmd__run` in the case that lists run's options), so no
    // option of a subcommand ever completes (clap-rs/clap#6421, open in clap_complete
    // 4.6.12). Generated for `garrison_agent`, the two agree; only the `complete` line must
    // name the real binary.
    let stand_in = bin_name.replace('-', "_");
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, stand_in.as_str(), &mut script);
    let script = String::from_utf8_lossy(&script);
    for line in script.lines() {
        let registers = line.trim_start().starts_with("complete -F ");
        let line = match line.strip_suffix(&format!(" {stand_in}")) {
            Some(head) if registers => format!("{head} {bin_name}"),
            _ => line.to_owned(),
        };
        // Like clap_complete's own generator: a reader that went away is the caller's concern.
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}

/// Writes one man page (section 1) per command and visible subcommand into `out_dir`
/// (created if missing): `garrison.1`, `garrison-attestor.1`, `garrison-attestor-serve.1`, ...
/// Returns the pages written, the command's own first.
pub fn man_pages(command: clap::Command, out_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    // As clap_mangen::generate_to does: built once, so that every subcommand knows its full
    // name (`garrison attestor serve`), and without clap's `help` subcommand.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_pages(&command, out_dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    out_dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    written.push(clap_mangen::Man::new(command.clone()).generate_to(out_dir)?);
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(subcommand, out_dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> clap::Command {
        clap::Command::new("tool")
            .about("A tool.")
            .version("1.0")
            .subcommand(
                clap::Command::new("serve")
                    .about("Serve.")
                    .arg(clap::Arg::new("config").long("config").required(true)),
            )
            .subcommand(
                clap::Command::new("ca")
                    .about("CA.")
                    .subcommand(clap::Command::new("init-root").about("Make a root.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn one_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages(example(), &dir.path().join("man1")).unwrap();
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["tool.1", "tool-serve.1", "tool-ca.1", "tool-ca-init-root.1"]
        );
        let serve = std::fs::read_to_string(&pages[1]).unwrap();
        assert!(serve.contains(".TH tool-serve 1"), "{serve}");
        assert!(serve.contains("\\-\\-config"), "{serve}");
    }

    /// The work-around for clap-rs/clap#6421: one spelling of each state, the real name
    /// registered.
    #[test]
    fn a_hyphenated_binary_completes_its_subcommands_options() {
        let mut out = Vec::new();
        completions(example().name("my-tool"), Shell::Bash, &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("cmd=\"my_tool__subcmd__serve\""),
            "{script}"
        );
        assert!(
            script.contains("        my_tool__subcmd__serve)"),
            "{script}"
        );
        assert!(!script.contains("my__subcmd__tool"), "{script}");
        let registered: Vec<&str> = script
            .lines()
            .filter(|l| l.trim_start().starts_with("complete -F"))
            .collect();
        assert_eq!(registered.len(), 2, "{script}");
        assert!(
            registered.iter().all(|l| l.ends_with(" my-tool")),
            "{registered:?}"
        );
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut out = Vec::new();
        completions(example(), Shell::Bash, &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("complete -F _tool"), "{script}");
        for word in ["serve", "init-root", "--config"] {
            assert!(script.contains(word), "{word} missing");
        }
    }
}
