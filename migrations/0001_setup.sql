-- Shared helpers. Every table carries created_at/updated_at; the trigger keeps
-- updated_at honest without relying on each UPDATE statement to set it.
create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;
