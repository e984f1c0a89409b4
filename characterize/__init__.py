"""characterize"""
