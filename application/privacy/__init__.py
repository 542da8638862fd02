"""A person's rights over their data: erasure (crypto-shredding) and the personal-data export."""
