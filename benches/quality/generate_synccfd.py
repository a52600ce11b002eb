#!/usr/bin/env python3
"""Generates a SynCCFD data set (PyPI `synccfd`, MIT) with a fixed seed and writes its
transactions as CSV, the columns deploy/mappings/synccfd.toml reads.

    generate_synccfd.py CUSTOMERS TERMINALS DAYS SEED OUT.csv
"""
import sys

from synccfd import DatasetGenerator


def main():
    customers, terminals, days, seed, out = sys.argv[1:6]
    generator = DatasetGenerator(
        n_customers=int(customers),
        n_terminals=int(terminals),
        nb_days=int(days),
        start_date="2025-01-01",
        random_state=int(seed),
    )
    _, _, transactions = generator.generate()
    columns = [
        "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TYPE",
        "TX_TERM_LAT", "TX_TERM_LONG", "TX_FRAUD", "TX_FRAUD_SCENARIO",
    ]
    transactions[columns].to_csv(out, index=False)
    print(f"{out}: {len(transactions)} transactions, {transactions.TX_FRAUD.mean():.2%} fraud",
          file=sys.stderr)


if __name__ == "__main__":
    main()
