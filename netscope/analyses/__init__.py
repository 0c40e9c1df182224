"""netscope/analyses"""
