"""netscope/operators"""
