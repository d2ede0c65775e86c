"""audiocraft.data"""
