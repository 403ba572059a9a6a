//! The Xoxoday emulator (contract §7). An independent implementation of
//! ../shared/xoxoday/api-reference.md: it must not use `crate::xoxoday`.

/// Placeholder until the emulator lands.
pub async fn run_standalone() -> anyhow::Result<()> {
    anyhow::bail!("the emulator is not built yet")
}
