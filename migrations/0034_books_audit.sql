-- Issue 12: the books audit (contract §8). Every run and every finding is
-- kept; finance reads the findings through the view finance_audit_findings
-- (no secrets: poNumbers, statuses, amounts, Xoxoday order ids), granted
-- like finance_orders (docs/finance.md). A view runs with its owner's
-- privileges, so a role granted only the view cannot read these tables.
create table books_audit_runs (
    audit_run_id bigint generated always as identity primary key,
    from_day date not null,
    to_day date not null,
    -- who started it: `cli` (audit books) or `serve` (BOOKS_AUDIT_INTERVAL)
    started_by text not null
        constraint books_audit_runs_started_by_check check (started_by in ('cli', 'serve')),
    outcome text not null default 'running'
        constraint books_audit_runs_outcome_check
        check (outcome in ('running', 'agree', 'findings', 'failed')),
    error text,
    pages integer not null default 0,
    upstream_orders integer not null default 0,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger books_audit_runs_set_updated_at before update on books_audit_runs
    for each row execute function set_updated_at();

create table books_audit_findings (
    finding_id bigint generated always as identity primary key,
    audit_run_id bigint not null references books_audit_runs (audit_run_id),
    -- '' for an upstream order that carries no poNumber
    po_number text not null,
    kind text not null
        constraint books_audit_findings_kind_check check (kind in (
            'unknown_upstream', 'spent_but_not_completed', 'missing_upstream',
            'amount_mismatch', 'duplicate_upstream')),
    ours jsonb,
    theirs jsonb not null,
    found_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index books_audit_findings_run_idx on books_audit_findings (audit_run_id);

-- One replica at a time runs the scheduled audit: a lease on this one row,
-- taken in one statement only when no live lease exists and the last run
-- started at least one interval ago.
create table books_audit_schedule (
    schedule_id integer primary key
        constraint books_audit_schedule_single_row check (schedule_id = 1),
    last_started_at timestamptz,
    lease_until timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
insert into books_audit_schedule (schedule_id) values (1);
create trigger books_audit_schedule_set_updated_at before update on books_audit_schedule
    for each row execute function set_updated_at();

create view finance_audit_findings as
select
    f.po_number,
    f.kind,
    f.ours,
    f.theirs,
    f.found_at,
    f.audit_run_id as audit_run,
    r.from_day,
    r.to_day,
    f.po_number as "poNumber",
    f.found_at as "foundAt",
    f.audit_run_id as "auditRun"
from books_audit_findings f
join books_audit_runs r on r.audit_run_id = f.audit_run_id;

comment on view finance_audit_findings is
    'Contract §8: every finding of every books audit run (poNumber, kind, ours, theirs, found_at, audit run), in snake_case and camelCase.';
