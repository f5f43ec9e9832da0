"""Helpers shared by the tests: servers, guards, small real configurations."""
