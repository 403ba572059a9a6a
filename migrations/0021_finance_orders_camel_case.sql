-- Contract §6 names the finance columns in camelCase (poNumber,
-- xoxodayOrderId, ...). The view keeps its snake_case columns (existing
-- queries keep working) and ALSO offers every column under its exact
-- contract name as a quoted alias, so `select "poNumber", "amountCharged"
-- from finance_orders` works too. Money is numeric; no voucher, key or
-- token column is reachable through the view. Recreated (not replaced)
-- because new columns are added in the middle of the list.
drop view finance_orders;
create view finance_orders as
select
    o.po_number,
    o.xoxoday_order_id,
    c.name as caller,
    o.product_id,
    o.denomination::numeric as denomination,
    o.quantity,
    o.currency_code as currency,
    o.order_total::numeric as order_total,
    o.order_discount::numeric as order_discount,
    o.amount_charged::numeric as amount_charged,
    o.status,
    o.delivery_status,
    o.created_at,
    o.settled_at,
    o.po_number as "poNumber",
    o.xoxoday_order_id as "xoxodayOrderId",
    o.product_id as "productId",
    o.order_total::numeric as "orderTotal",
    o.order_discount::numeric as "orderDiscount",
    o.amount_charged::numeric as "amountCharged",
    o.delivery_status as "deliveryStatus",
    o.created_at as "createdAt",
    o.settled_at as "settledAt"
from orders o
join callers c on c.caller_id = o.caller_id;

comment on view finance_orders is
    'Contract §6: one row per order, no secrets, money as numeric. Every column is offered in snake_case and, where it differs, under its contract camelCase name (quoted).';
