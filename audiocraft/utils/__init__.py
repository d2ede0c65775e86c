"""audiocraft.utils"""
