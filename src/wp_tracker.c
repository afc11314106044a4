/* placeholder (created by the bitmap engineer so the tree builds); owner replaces it */
