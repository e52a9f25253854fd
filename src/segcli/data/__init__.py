"""Datasets: native formats → canonical layout + card; loading for training."""
