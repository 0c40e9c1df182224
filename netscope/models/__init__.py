"""netscope/models"""
