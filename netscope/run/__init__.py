"""netscope/run"""
