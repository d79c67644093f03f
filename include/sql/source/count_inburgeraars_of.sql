SELECT COUNT(*) FROM kbi_inburgeraar WHERE doelgroep = 'inburgeraar' AND nis_code_hoofdverblijf IN ({codes})
