use clap::Parser;
use order_gateway::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    order_gateway::cli::run(cli)
}
