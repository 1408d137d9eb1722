-- One order per invoice: amount = sum of quantity x unit price of its lines. Cancellation
-- invoices ('C...') have negative quantities, so they become refunds. An invoice without a
-- customer keeps a null customer_id and is quarantined by stg_orders ("missing customer_id").
with lines as (
    select * from raw.src_online_retail
),

-- line items as numbers; '17850.0' customer ids as '17850'
typed as (
    select
        trim(invoiceno) as invoice_no,
        nullif(regexp_replace(trim(customerid), '\.0+$', ''), '') as customer_id,
        invoicedate as invoiced_at_text,
        try_cast(quantity as double) as quantity,
        try_cast(unitprice as double) as unit_price,
        source_file,
        source_row
    from lines
),

-- an invoice's lines share a customer; its time is its first line's
invoices as (
    select
        invoice_no,
        min(customer_id) as customer_id,
        min(invoiced_at_text) as ordered_at,
        sum(quantity * unit_price) filter (where not $drop_non_positive_prices or unit_price > 0) as amount,
        count(*) filter (where quantity is null or unit_price is null) as unreadable_lines,
        min(source_file) as source_file,
        min(source_row) as source_row
    from typed
    group by invoice_no
),

final as (
    select
        invoice_no as order_id,
        customer_id,
        ordered_at,
        case
            when unreadable_lines = 0 then coalesce(round(amount, 2), 0)::varchar
            else 'unreadable line item'
        end as amount,
        'GBP' as currency,
        null as channel,
        source_file,
        source_row
    from invoices
)

select * from final
