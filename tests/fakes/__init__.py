"""Test fakes (worker measure functions, fault injection); never imported by the product."""
