//! TEMPORARY: being written by the password work; replaced wholesale.
#[derive(clap::Args, Debug)]
pub struct PwArgs {}
pub fn run(_args: PwArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
