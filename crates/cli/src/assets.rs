//! `dodvpn generate-assets DIR` (hidden): the man pages and shell completions the
//! Debian package ships, generated from the same clap definitions that parse the
//! command line, so they cannot describe flags the binary does not have.
//! scripts/package-deb.sh runs it with the binary it packages.

use std::path::Path;

use anyhow::Context;
use clap::{Command, CommandFactory};
use clap_complete::Shell;

/// DIR/man/man1/*.1 (one page per command and subcommand, `dodvpn-agent-run.1`…) and
/// DIR/completions/{dodvpn.bash,_dodvpn,dodvpn.fish}.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man/man1");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    clap_mangen::generate_to(with_descriptions(crate::Cli::command(), None), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    let pages = std::fs::read_dir(&man)?.count();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = crate::Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "dodvpn", &completions)
            .with_context(|| format!("cannot write the {shell} completion"))?;
        println!("completion  {}", path.display());
    }
    println!("man pages   {pages} in {}", man.display());
    Ok(())
}

/// A man page's NAME line needs a description (whatis, apropos); a subcommand without
/// one of its own points to its parent's page. `parent`: the parent's page name and
/// command words.
fn with_descriptions(cmd: Command, parent: Option<(&str, &str)>) -> Command {
    let (page, words) = match parent {
        Some((p, w)) => (
            format!("{p}-{}", cmd.get_name()),
            format!("{w} {}", cmd.get_name()),
        ),
        None => (cmd.get_name().to_string(), cmd.get_name().to_string()),
    };
    let cmd = match parent {
        Some((p, _)) if cmd.get_about().is_none() => cmd.about(format!("{words} (see {p}(1))")),
        _ => cmd,
    };
    cmd.mut_subcommands(|sub| with_descriptions(sub, Some((&page, &words))))
}
