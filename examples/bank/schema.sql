-- The bank's write model. walfold reads it through logical replication (pgoutput).
-- `walfold setup --schema` applies this file; it is safe to run twice.
CREATE TABLE IF NOT EXISTS users (
  id         bigserial PRIMARY KEY,
  full_name  text NOT NULL,
  email      text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS accounts (
  id         bigserial PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users,
  currency   char(3) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS transactions (
  id          bigserial PRIMARY KEY,
  account_id  bigint NOT NULL REFERENCES accounts,
  amount      numeric(20,4) NOT NULL CHECK (amount > 0),
  kind        text NOT NULL CHECK (kind IN ('deposit', 'withdrawal')),
  transfer_id uuid NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS accounts_user_id_idx ON accounts (user_id);
CREATE INDEX IF NOT EXISTS transactions_account_created_idx
  ON transactions (account_id, created_at DESC, id DESC);

-- Corrections (UPDATE/DELETE of a transaction) must carry the old row so walfold can take the
-- old amount back out of the balance; account moves need the old owner and currency.
ALTER TABLE transactions REPLICA IDENTITY FULL;
ALTER TABLE accounts REPLICA IDENTITY FULL;
