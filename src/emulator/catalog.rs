//! The fixed product catalog (docs/emulator.md lists it; colleagues' tests
//! rely on these ids) and its getVouchers rendering (api-reference §5.2).

use rust_decimal::Decimal;
use serde_json::{Value, json};

/// How a product is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Settles inside the placeOrder call: delivered with vouchers.
    Realtime,
    /// Answers `pending`; after the delivery delay becomes delivered.
    DelayedDelivered,
    /// Answers `pending`; after the delivery delay becomes canceled.
    DelayedCanceled,
}

/// Which denominations a product accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denominations {
    /// `fixed_denomination`: one of these whole amounts.
    Fixed(&'static [u32]),
    /// `open_value`: any amount with at most 2 decimals in `[min, max]`.
    Open {
        /// `minValue`.
        min: u32,
        /// `maxValue`.
        max: u32,
    },
}

/// One emulated product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// `productId`.
    pub id: i64,
    /// `name`.
    pub name: &'static str,
    /// Realtime or delayed (and how a delayed one ends).
    pub delivery: Delivery,
    /// Fixed or open value.
    pub value: Denominations,
    /// `isPhoneNumberMandatory`: placeOrder without `contact` is refused.
    pub phone_mandatory: bool,
    /// `orderQuantityLimit`.
    pub quantity_limit: u32,
    /// `discount`, in hundredths of a percent (200 = 2%).
    pub discount_bp: u32,
    /// Inactive products are hidden from getVouchers and refused (PLE10042).
    pub active: bool,
}

const fn product(id: i64, name: &'static str, delivery: Delivery, value: Denominations) -> Product {
    Product {
        id,
        name,
        delivery,
        value,
        phone_mandatory: false,
        quantity_limit: 10,
        discount_bp: 0,
        active: true,
    }
}

static CATALOG: [Product; 7] = [
    product(
        1001,
        "Emulator Realtime Card",
        Delivery::Realtime,
        Denominations::Fixed(&[10, 25, 50, 100]),
    ),
    Product {
        discount_bp: 200,
        ..product(
            1002,
            "Emulator Open Value Card",
            Delivery::Realtime,
            Denominations::Open { min: 5, max: 500 },
        )
    },
    product(
        1003,
        "Emulator Delayed Card",
        Delivery::DelayedDelivered,
        Denominations::Fixed(&[10, 50]),
    ),
    product(
        1004,
        "Emulator Delayed Canceled Card",
        Delivery::DelayedCanceled,
        Denominations::Fixed(&[10, 50]),
    ),
    Product {
        phone_mandatory: true,
        ..product(
            1005,
            "Emulator Phone Card",
            Delivery::Realtime,
            Denominations::Fixed(&[10, 25]),
        )
    },
    Product {
        quantity_limit: 5,
        ..product(
            1006,
            "Emulator Limited Card",
            Delivery::Realtime,
            Denominations::Fixed(&[10, 25]),
        )
    },
    Product {
        active: false,
        ..product(
            1007,
            "Emulator Inactive Card",
            Delivery::Realtime,
            Denominations::Fixed(&[10]),
        )
    },
];

/// Every product, active or not.
pub fn products() -> &'static [Product] {
    &CATALOG
}

/// The product with this id, active or not.
pub fn find(id: i64) -> Option<&'static Product> {
    CATALOG.iter().find(|p| p.id == id)
}

impl Product {
    /// Whether `d` is a valid denomination (else PLE10018).
    pub fn accepts(&self, d: Decimal) -> bool {
        match self.value {
            Denominations::Fixed(list) => list.iter().any(|v| Decimal::from(*v) == d),
            Denominations::Open { min, max } => {
                d >= Decimal::from(min) && d <= Decimal::from(max) && d.normalize().scale() <= 2
            }
        }
    }

    /// The discount as a percentage.
    pub fn discount_percent(&self) -> Decimal {
        Decimal::new(i64::from(self.discount_bp), 2)
    }

    /// Whether delivery is delayed (answers `pending` first).
    pub fn is_delayed(&self) -> bool {
        self.delivery != Delivery::Realtime
    }

    /// The getVouchers item, with some documented type drift.
    pub fn to_json(&self) -> Value {
        let (value_type, min, max, denoms) = match self.value {
            Denominations::Fixed(list) => {
                let d: Vec<String> = list.iter().map(u32::to_string).collect();
                ("fixed_denomination", 0, 0, d.join(","))
            }
            Denominations::Open { min, max } => ("open_value", min, max, format!("{min},{max}")),
        };
        let delivery = if self.is_delayed() {
            "delayed"
        } else {
            "realtime"
        };
        json!({
            "productId": self.id, "name": self.name, "description": "",
            "orderQuantityLimit": self.quantity_limit,
            "termsAndConditionsInstructions": "", "expiryAndValidity": "",
            "redemptionInstructions": "", "categories": "eCommerce",
            "lastUpdateDate": "2024-01-06 10:23:24", "imageUrl": "",
            "currencyCode": "USD", "currencyName": "US Dollar",
            "countryName": "United States", "countryCode": "US",
            "countries": [{"code": "US", "name": "United States"}],
            "valueType": value_type, "maxValue": max, "minValue": min,
            "valueDenominations": denoms,
            "tatInDays": if self.is_delayed() { json!("1 - 7") } else { json!(0) },
            "usageType": "online", "deliveryType": delivery,
            "fee": 0, "discount": super::wire::number(self.discount_percent()), "exchangeRate": "1",
            "isPhoneNumberMandatory": self.phone_mandatory,
            "isRecommended": 0, "filterGroupCode": "voucher_category",
        })
    }
}
