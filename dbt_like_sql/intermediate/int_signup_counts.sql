-- Subscription signups counted per plan, signup month and MRR at signup, with their last
-- observed lifetime month and the lifetime month of their first churn (null: not churned in an
-- observed month): what churn_by_price_change reads to find new-signup price changes and the
-- churn of the signups around them. Bounded by plans, months and prices, not by customers.
with signups as (
    select
        signup_plan,
        cohort_month,
        signup_mrr,
        last_observed_lifetime_month,
        case
            when first_churn_lifetime_month <= last_observed_lifetime_month then first_churn_lifetime_month
        end as first_churn_lifetime_month
    from staging.int_customers
    where basis = 'subscription'
),

final as (
    select
        signup_plan,
        cohort_month,
        signup_mrr,
        last_observed_lifetime_month::integer as last_observed_lifetime_month,
        first_churn_lifetime_month::integer as first_churn_lifetime_month,
        count(*)::bigint as customers
    from signups
    group by signup_plan, cohort_month, signup_mrr, last_observed_lifetime_month, first_churn_lifetime_month
)

select * from final
