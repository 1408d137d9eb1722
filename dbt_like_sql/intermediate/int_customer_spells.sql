-- Active spells per customer and basis, observed up to as_of. A spell starts at a signup or
-- reactivation and ends at a churn; spell_end_at is null while it is still open at as_of.
-- subscription: from `subscribed`/`reactivated` to `cancelled`/`expired` (or a downgrade, when
-- $downgrade_is_churn).
-- orders: from a positive order to last order + inactivity_days with no positive order between.
with observation as (
    select * from staging.int_observation_window
),

subscription_events as (
    select * from staging.int_observed_subscription_events
),

-- what each event does to the customer's spell; with $downgrade_is_churn a move to a cheaper
-- plan ends the spell and a later move to a dearer one starts the next. `not materialized`: each
-- branch below reads only its own rows
toggles as not materialized (
    select
        *,
        case
            when movement in ('new', 'reactivation') then 'start'
            when movement in ('voluntary_churn', 'involuntary_churn') then 'end'
            when $downgrade_is_churn and event_type = 'plan_changed' and movement = 'contraction' then 'end'
            when $downgrade_is_churn and event_type = 'plan_changed' and movement = 'expansion' then 'start'
        end as toggle
    from subscription_events
),

-- without $downgrade_is_churn a valid lifecycle alternates starts and ends, so the lifecycle's
-- spell_number already numbers the spells: no sort needed
counted_boundaries as (
    select * from toggles
    where not $downgrade_is_churn and toggle is not null
),

-- with it, a toggle only counts when it changes the state (an upgrade while active starts nothing)
boundaries as (
    select
        *,
        last_value(toggle ignore nulls) over (
            partition by customer_id order by event_seq rows between unbounded preceding and 1 preceding
        ) as state_before
    from toggles
    where $downgrade_is_churn and toggle is not null
),

numbered_boundaries as (
    select
        * exclude (state_before, spell_number),
        (count(*) filter (where toggle = 'start' and coalesce(state_before <> 'start', true)) over (
            partition by customer_id order by event_seq rows between unbounded preceding and current row
        ))::integer as spell_number
    from boundaries
    where (toggle = 'start' and coalesce(state_before <> 'start', true)) or (toggle = 'end' and state_before = 'start')
),

spell_boundaries as (
    select
        customer_id,
        occurred_at,
        movement,
        mrr_before,
        mrr_after,
        toggle,
        spell_number
    from (
        select
            customer_id,
            occurred_at,
            movement,
            mrr_before,
            mrr_after,
            toggle,
            spell_number
        from counted_boundaries
        union all
        select
            customer_id,
            occurred_at,
            movement,
            mrr_before,
            mrr_after,
            toggle,
            spell_number
        from numbered_boundaries
    ) as boundaries
),

subscription_starts as (
    select
        customer_id,
        spell_number,
        occurred_at as spell_start_at,
        mrr_after as start_mrr
    from spell_boundaries
    where toggle = 'start'
),

subscription_ends as (
    select
        customer_id,
        spell_number,
        occurred_at as spell_end_at,
        case movement
            when 'voluntary_churn' then 'voluntary'
            when 'involuntary_churn' then 'involuntary'
            else 'downgrade'
        end as end_kind,
        mrr_before as end_mrr
    from spell_boundaries
    where toggle = 'end'
),

subscription_spells as (
    select
        'subscription' as basis,
        starts.customer_id,
        starts.spell_number,
        starts.spell_start_at,
        ends.spell_end_at,
        ends.end_kind,
        starts.start_mrr,
        ends.end_mrr
    from subscription_starts as starts
    left join subscription_ends as ends using (customer_id, spell_number)
),

-- positive orders; an order more than inactivity_days after the previous one starts a new spell
activity as (
    select
        orders.customer_id,
        orders.order_id,
        orders.ordered_at
    from staging.int_orders as orders, observation
    where orders.is_activity and orders.ordered_at <= observation.as_of
),

gaps as (
    select
        customer_id,
        ordered_at,
        -- exact days, as microseconds (cheaper than timestamptz + interval, which goes through ICU)
        coalesce(
            epoch_us(ordered_at) - epoch_us(lag(ordered_at) over by_time)
            > $inactivity_days::bigint * 86400000000,
            true
        ) as starts_spell,
        order_id
    from activity
    window by_time as (partition by customer_id order by ordered_at, order_id)
),

numbered as (
    select
        *,
        sum(starts_spell::integer) over (
            partition by customer_id order by ordered_at, order_id rows between unbounded preceding and current row
        )::integer as spell_number
    from gaps
),

order_spells as (
    select
        'orders' as basis,
        customer_id,
        spell_number,
        min(ordered_at) as spell_start_at,
        max(ordered_at) + to_days($inactivity_days::integer) as churn_at
    from numbered
    group by customer_id, spell_number
),

final as (
    select
        basis,
        customer_id,
        spell_number,
        spell_start_at,
        spell_end_at,
        end_kind,
        start_mrr,
        end_mrr
    from subscription_spells
    union all
    select
        basis,
        customer_id,
        spell_number,
        spell_start_at,
        case when churn_at <= observation.as_of then churn_at end as spell_end_at,
        case when churn_at <= observation.as_of then 'inactivity' end as end_kind,
        null::double as start_mrr,
        null::double as end_mrr
    from order_spells, observation
)

select
    final.*,
    month_of(spell_start_at, $timezone) as spell_start_month,
    month_of(spell_end_at, $timezone) as spell_end_month
from final
