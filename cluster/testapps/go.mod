module kdiag.local/testapps

go 1.22
