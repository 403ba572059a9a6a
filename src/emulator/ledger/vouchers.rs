//! Voucher generation: delivering an order fills one voucher per unit with
//! a fresh code, pin and a validity a year out, and stamps `deliveryDate`.

use chrono::Utc;
use rand::{Rng as _, distributions::Alphanumeric};

use super::{LedgerOrder, Voucher, plum_date};

/// Marks the order delivered and gives it its vouchers.
pub(super) fn deliver(order: &mut LedgerOrder) {
    let now = Utc::now();
    let validity = (now + chrono::Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    order.vouchers = (0..order.quantity)
        .map(|_| Voucher {
            code: voucher_code(),
            pin: pin(),
            validity: validity.clone(),
            amount: order.denomination,
        })
        .collect();
    order.delivery_status = "delivered".into();
    order.delivery_date = plum_date(now);
}

fn voucher_code() -> String {
    let mut rng = rand::thread_rng();
    let group = |rng: &mut rand::rngs::ThreadRng| -> String {
        (0..4)
            .map(|_| char::from(rng.sample(Alphanumeric)).to_ascii_uppercase())
            .collect()
    };
    format!(
        "EMU-{}-{}-{}",
        group(&mut rng),
        group(&mut rng),
        group(&mut rng)
    )
}

fn pin() -> String {
    let mut rng = rand::thread_rng();
    let digits = rng.gen_range(4..=6);
    (0..digits)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}
