//! `guard-docgen DIR`: man pages (DIR/man/guardd.8, guardctl.8) and shell completions
//! (DIR/completions/{bash,zsh,fish}) generated from the binaries' clap definitions.

use std::{fs, path::PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::{Shell, generate_to};
use guard_user::control::cli::{guardctl::Cli, guardd::Options};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/docs".into()),
    );
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    for mut cmd in [Options::command(), Cli::command()] {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("8")
            .render(&mut page)?;
        fs::write(man.join(format!("{name}.8")), page)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let dir = out.join("completions").join(shell.to_string());
            fs::create_dir_all(&dir)?;
            generate_to(shell, &mut cmd, name.clone(), &dir)?;
        }
        render_subcommands(&cmd, &man)?;
    }
    println!("wrote man pages and completions under {}", out.display());
    Ok(())
}

/// One page per guardctl subcommand (guardctl-ban.8, ...), as git does.
fn render_subcommands(cmd: &Command, dir: &std::path::Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name.clone()))
            .section("8")
            .render(&mut page)?;
        fs::write(dir.join(format!("{name}.8")), page)?;
    }
    Ok(())
}
