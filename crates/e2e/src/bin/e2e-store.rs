//! A mailbox-store process for fault tests (killed with SIGKILL and
//! restarted): `e2e-store LISTEN DATABASE_URL`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(url)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: e2e-store LISTEN DATABASE_URL");
    };
    let store = mailbox_store::Store::open(mailbox_store::StoreSettings::for_test(&url)).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening {}", listener.local_addr()?);
    mailbox_store::serve(store, listener, service_kit::CancellationToken::new()).await
}
